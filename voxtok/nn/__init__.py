"""Neural-network building blocks shared by the codecs and the TTS models, one module per idea:
positions (sinusoid and rotary tables), masks (padding, causal), attention (one multi-head
attention module with switches), modes (eval-mode context manager), sampling (per-item seeds),
decoding (the batched autoregressive loop). They depend on torch and voxtok.errors only, so
every model layer may import them.
"""
