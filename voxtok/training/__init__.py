"""Training plumbing every trainer shares (GAN codecs and vocoders, CTC tokenizers, TTS models, the
benchmark's probes): `optim.py` builds the AdamW optimiser and its warm-up + cosine schedule."""
