"""A reduced, random-weight CosyVoice-300M release folder for the tests (`make_release`), shared by the
converter test (tests/test_convert_cosyvoice.py) and the recipe's `--pretrained_tts` tests.

The folder is built from the reference-layout fixtures the part tests committed, all made once from
FunAudioLLM/CosyVoice at commit ace7c47 (see their docstrings; nothing new is committed and no reference
code runs here):
- cosyvoice.yaml: the `llm:` block of tests/fixtures/cosyvoice_llm/cosyvoice.yaml, the `flow:` and
  `feat_extractor:` blocks of tests/fixtures/cosyvoice_flow/cosyvoice.yaml, the `hift:` block of
  tests/fixtures/cosyvoice_hift/cosyvoice.yaml and the release's tokenizer entries
  (tests/fixtures/cosyvoice_frontend/cosyvoice_300m_tokenizer.yaml), merged into one file. The parts agree
  on what they share (64 speech tokens, 192-d x-vectors, 80 mels at 22.05 kHz, hop 256); the LLM's text
  vocabulary is the release's 51,866 Whisper BPE ids instead of the fixture's 100;
- llm.pt: the LLM fixture's state_dict (reference layout) with its text_embedding grown to 51,866 rows
  (random rows appended; the fixture's 100 rows unchanged); flow.pt and hift.pt: the fixtures as they are;
- campplus.onnx and speech_tokenizer_v1.onnx: random-weight stand-ins with the released models' inputs
  and outputs (tests/onnx_models.py; the tokenizer's codebook has the 64 codes of the reduced models);
- spk2info.pt: two speakers {"embedding": [1, 192]} (one named in Chinese, as the SFT release's) and one
  zero-shot entry without an embedding, as CosyVoice's `add_zero_shot_spk` saves them.
Needs torch, onnx (to export the stand-ins); converting the folder also needs onnxruntime and whisper.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from onnx_models import export_campplus, export_s3

FIXTURES = Path(__file__).parent / "fixtures"
WHISPER_IDS = 51866
SPEAKERS = ("spk_a", "英文女")  # the SFT release names its voices in Chinese


def _blocks(path: Path) -> str:
    """A fixture YAML without its top-level constants (the merged file states them once)."""
    return "\n".join(line for line in path.read_text().splitlines()
                     if not line.startswith(("sample_rate:", "spk_embed_dim:")))


def make_release(folder: Path) -> Path:
    """Write the reduced CosyVoice-300M release folder (see the module docstring) -> `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    llm_yaml = (FIXTURES / "cosyvoice_llm" / "cosyvoice.yaml").read_text()
    assert "text_token_size: 100\n" in llm_yaml
    (folder / "cosyvoice.yaml").write_text("\n".join([
        llm_yaml.replace("text_token_size: 100\n", f"text_token_size: {WHISPER_IDS}\n"),
        _blocks(FIXTURES / "cosyvoice_flow" / "cosyvoice.yaml"),
        _blocks(FIXTURES / "cosyvoice_hift" / "cosyvoice.yaml"),
        (FIXTURES / "cosyvoice_frontend" / "cosyvoice_300m_tokenizer.yaml").read_text()]))
    state = torch.load(FIXTURES / "cosyvoice_llm" / "llm.pt", weights_only=True)
    table = state["text_embedding.weight"]
    grown = torch.randn(WHISPER_IDS, table.shape[1], generator=torch.Generator().manual_seed(5)) * table.std()
    grown[: table.shape[0]] = table
    torch.save({**state, "text_embedding.weight": grown}, folder / "llm.pt")
    shutil.copyfile(FIXTURES / "cosyvoice_flow" / "flow.pt", folder / "flow.pt")
    shutil.copyfile(FIXTURES / "cosyvoice_hift" / "hift.pt", folder / "hift.pt")
    export_campplus(folder / "campplus.onnx")
    export_s3(folder / "speech_tokenizer_v1.onnx", codebook_size=64)
    g = torch.Generator().manual_seed(7)
    spk2info = {name: {"embedding": torch.randn(1, 192, generator=g)} for name in SPEAKERS}
    spk2info["my_zero_shot_voice"] = {"prompt_text": torch.zeros(1, 3, dtype=torch.int32),
                                      "llm_embedding": torch.randn(1, 192, generator=g)}
    torch.save(spk2info, folder / "spk2info.pt")
    return folder


def convert_release(release: Path, out: Path) -> Path:
    """`voxtok convert cosyvoice --checkpoint release -o out` -> out (asserts the command succeeded)."""
    from voxtok.cli import main

    assert main(["convert", "cosyvoice", "--checkpoint", str(release), "-o", str(out)]) == 0
    return out
