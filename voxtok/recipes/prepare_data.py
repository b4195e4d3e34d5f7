"""Stage 0: make (synthetic) or find (LibriTTS) the corpus and write data/{train,dev,test}.

Example:
    python -m voxtok.recipes.prepare_data data=mini data_dir=data nj=2
    python -m voxtok.recipes.prepare_data data=libritts data.corpus_dir=/corpora/LibriTTS
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from voxtok.config import check_keys
from voxtok.errors import BadConfigError
from voxtok.recipes import recipe_main

# The `data:` block (configs/data/*.yaml): the corpus, and for the synthetic one what to make.
CORPUS_KEYS = ("corpus", "corpus_dir", "subsets", "seed", "num_speakers", "utts_per_speaker", "num_dev_speakers",
               "num_test_speakers", "hours")


def make_corpus(data_cfg: DictConfig, nj: int) -> Path:
    """Return the LibriTTS-layout corpus root, synthesizing the mini corpus when asked."""
    check_keys(data_cfg, CORPUS_KEYS, "data")
    root = Path(data_cfg.corpus_dir)
    if data_cfg.corpus == "libritts":
        if not root.is_dir():
            raise BadConfigError("LibriTTS root does not exist (set --libritts_root)", root)
        return root
    if data_cfg.corpus != "synthetic":
        raise BadConfigError(f"unknown corpus '{data_cfg.corpus}' (synthetic or libritts)")
    from voxtok.data.synth import SynthConfig, synthesize_corpus

    config = SynthConfig(
        seed=int(data_cfg.seed),
        num_speakers=int(data_cfg.num_speakers),
        utts_per_speaker=int(data_cfg.utts_per_speaker),
        num_dev_speakers=int(data_cfg.num_dev_speakers),
        num_test_speakers=int(data_cfg.num_test_speakers),
        hours=data_cfg.hours,
    )
    return synthesize_corpus(root, config, nj=nj)


def prepare(cfg: DictConfig) -> dict:
    """Run stage 0 and return the per-split summary."""
    from voxtok.data.kaldi import validate_data_dir
    from voxtok.data.libritts import prepare_splits

    root = make_corpus(cfg.data, int(cfg.nj))
    subsets = list(cfg.data.subsets) if cfg.data.get("subsets") else None
    summary = prepare_splits(root, cfg.data_dir, subsets=subsets)
    for split in ("train", "dev", "test"):
        validate_data_dir(Path(cfg.data_dir) / split, strict=True)
    return summary


@recipe_main("prepare_data")
def main(cfg: DictConfig) -> None:
    summary = prepare(cfg)
    for split, info in summary.items():
        print(f"{split}: " + "; ".join(r.summary() for r in info))


if __name__ == "__main__":
    main()
