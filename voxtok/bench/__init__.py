"""DASB-style benchmark: reconstruction metrics, classical codec baselines, probes and reports.

`metrics` scores a reconstruction against its reference (PESQ, STOI, SI-SDR, mel distance,
speaker similarity); `baselines` runs Codec2 and Opus through their command-line tools so neural
tokenizers can be compared with them at matching bitrates.
"""
