"""Data preparation: Kaldi data dirs, corpus preparation, datasets and token stores."""
