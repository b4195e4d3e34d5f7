"""Neural speech codecs: the Codec API, its registry, and the models built on `modules`."""
