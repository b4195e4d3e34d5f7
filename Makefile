# Two commands do everything on a fresh machine:
#   make mini   - set up, then run the main job (the mini LibriTTS recipe)
#   make test   - set up, then run the test suite (what CI runs)
# Set-up is idempotent: stamps make a second run return in seconds.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch 2.14.1 is a local wheel on this workplace (pip cap); torchaudio 2.11 (for the
# EnCodec/Vocos baselines) loads beside it. The build runs on CPU and on CUDA alike.
TORCH_SPEC ?= torch==2.14.1
EXTRAS ?= eval,teachers,voices,demo,baselines,published,cosyvoice,dev
STAMPS := .stamps

.PHONY: setup system venv test test-fast mini demo clean-stamps

setup: system venv

system: $(STAMPS)/system
$(STAMPS)/system: tools/install_system.sh
	bash tools/install_system.sh
	@mkdir -p $(STAMPS) && touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[$(EXTRAS)]" "$(TORCH_SPEC)"
	$(PIP) install -q --no-deps descript-audio-codec==1.0.0 descript-audiotools==0.7.2  # pins protobuf<3.20
	@mkdir -p $(STAMPS) && touch $@

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q tests

mini: setup
	cd egs/libritts && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" HF_HUB_OFFLINE=1 ./run.sh --mini true

clean-stamps:
	rm -rf $(STAMPS)

demo: setup
	HF_HUB_OFFLINE=1 $(PY) demo/app.py --exp egs/libritts/exp/mini $(DEMO_ARGS)
