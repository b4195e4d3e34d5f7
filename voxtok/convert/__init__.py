"""Converters of published checkpoints into VoxTok checkpoint folders (`voxtok convert KIND ...`).

Each converter is a module of this package with `add_command(subparsers)` (its `voxtok convert KIND`
subcommand, with --help and an example) and a `convert_*` function that reads the published files,
builds the matching VoxTok model, maps the state_dict key for key (`voxtok.convert.keymap`), and writes
a normal checkpoint folder (`save_pretrained`), so `voxtok.load`, the codec CLI, the benchmark, the
demo and training accept the result. Parity tests (tests/test_convert_*.py) prove that a converted
model computes what the reference code computes.
"""

from __future__ import annotations

# kind -> module of this package; `voxtok convert --help` lists them in this order.
CONVERTERS = {"wavtokenizer": "voxtok.convert.wavtokenizer", "vocos": "voxtok.convert.vocos", "speechtokenizer": "voxtok.convert.speechtokenizer", "dmcodec": "voxtok.convert.dmcodec", "cosyvoice": "voxtok.convert.cosyvoice"}
