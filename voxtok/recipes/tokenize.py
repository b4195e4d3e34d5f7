"""Tokenize data dirs with a trained codec into sharded token stores that later stages read.

Example:
    python -m voxtok.recipes.tokenize model=exp/mini/codec/model data_dir=data \
        out_dir=dump/mini/tokens/wavtokenizer splits=[train,dev,test] nj=2

Each split becomes <out_dir>/<split>/ (meta.json = the codec's token header fields, one codes
array [Q, T'] per utterance). A killed run resumes: utterances already stored are skipped.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from voxtok.data.kaldi import DataDir
from voxtok.recipes import recipe_main


def token_dtype(codebook_size: int) -> str:
    """Smallest integer dtype that holds codes below `codebook_size`."""
    return "int16" if codebook_size <= 32768 else "int32"


def tokenize_part(model_dir: str, items: list[tuple[str, str]], out_dir: str, rank: int, n_q: int | None,
                  threads: int) -> tuple[int, dict[str, str]]:
    """Encode `items` into the store at `out_dir` as writer `rank`; returns (stored, failures)."""
    from voxtok.registry import load
    from voxtok.codecs.tokenize import encode_stream
    from voxtok.data.shards import ShardWriter

    torch.set_num_threads(threads)
    codec = load(model_dir, kind="codec")
    header = codec.token_header(0, 0, n_q)
    meta = {k: v for k, v in header.__dict__.items() if k not in ("num_frames", "num_samples")}
    failed: dict[str, str] = {}
    stored = 0
    with ShardWriter(out_dir, meta, dtype=token_dtype(codec.codebook_size), rank=rank, expect_ndim=2) as writer:
        todo = [(u, p) for u, p in items if u not in writer]
        for utt, codes, _, error in encode_stream(codec, todo, n_q):
            if error:
                failed[utt] = error
            else:
                writer.add(utt, codes.numpy().astype(np.int64))
                stored += 1
    return stored, failed


def tokenize_split(model_dir: str, data_dir: Path, out_dir: Path, nj: int, n_q: int | None) -> str:
    """Tokenize one data dir with `nj` processes; returns a one-line summary."""
    data = DataDir.load(data_dir)
    items = [(u, data.wav_scp[u]) for u in data.utts]
    parts = [items[i::nj] for i in range(nj)]
    if nj == 1:
        results = [tokenize_part(model_dir, items, str(out_dir), 0, n_q, torch.get_num_threads())]
    else:
        with ProcessPoolExecutor(nj) as pool:
            results = list(pool.map(tokenize_part, [model_dir] * nj, parts, [str(out_dir)] * nj, range(nj),
                                    [n_q] * nj, [1] * nj))
    stored = sum(r[0] for r in results)
    failed = {k: v for r in results for k, v in r[1].items()}
    for reason in failed.values():
        print(f"skipped: {reason}")
    return f"{data_dir}: {len(items)} utterances, {stored} newly stored, {len(failed)} failed -> {out_dir}"


@recipe_main("tokenize")
def main(cfg: DictConfig) -> None:
    for split in cfg.splits:
        print(tokenize_split(str(cfg.model), Path(cfg.data_dir) / split, Path(cfg.out_dir) / split,
                             int(cfg.nj), cfg.get("n_q")))


if __name__ == "__main__":
    main()
