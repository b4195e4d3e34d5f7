"""DASB-style benchmark: systems, reconstruction metrics, classical codec baselines, probes and reports.

`systems` names what is compared (spec strings) and runs VoxTok checkpoints and the classical codecs;
`published` (EnCodec, DAC, SpeechTokenizer, SNAC packages), `hf_codecs` (transformers codecs, Mimi) and
`ssl_units` (k-means units over an SSL model) load published tokenizers; `discover` recognises them
in a folder. `metrics` scores a reconstruction against its reference (PESQ, STOI, SI-SDR, mel
distance, speaker similarity with an encoder from `speaker_encoders`), `mos` predicts quality
without one (DNSMOS, UTMOS); `baselines` runs Codec2 and Opus through their command-line tools;
`probes` (with `ecapa`) and `lm` train the downstream models; `runner` and `report` tie them together.
"""
