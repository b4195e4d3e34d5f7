"""Building blocks the codecs are assembled from: encoders, decoders, quantizers, discriminators, losses."""
