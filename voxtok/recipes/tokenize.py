"""Tokenize data dirs with a trained codec into sharded token stores that later stages read.

Example:
    python -m voxtok.recipes.tokenize model=exp/mini/codec/model data_dir=data \
        out_dir=dump/mini/tokens/wavtokenizer splits=[train,dev,test] nj=2
    python -m voxtok.recipes.tokenize ... ngpu=4 dtype=bfloat16     # one worker per GPU

Each split becomes <out_dir>/<split>/ (meta.json = the codec's token header fields, one codes
array [Q, T'] per utterance, progress.json = how far the run got). The utterances are dealt to
the workers by duration (`ngpu` > 0: one per GPU; else `nj` processes on `device`); each writes
its own shards. A killed run resumes: utterances already stored are skipped, and a shard the kill
left incomplete is removed and redone.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from voxtok.codecs.tokenize import EncodeJob, encode_corpus
from voxtok.data.kaldi import DataDir
from voxtok.recipes import recipe_main


def tokenize_split(model_dir: str, data_dir: Path, out_dir: Path, nj: int, n_q: int | None, *, ngpu: int = 0,
                   device: str = "cpu", dtype: str = "float32", batch_seconds: float = 60.0,
                   shard_items: int = 200, flush_seconds: float | None = 60.0) -> str:
    """Tokenize one data dir into the store `out_dir` with the workers of voxtok.device.worker_devices
    (ngpu, nj, device); returns a one-line summary (new, skipped, failed)."""
    from voxtok.device import worker_devices

    devices = worker_devices(ngpu, nj, device)
    data = DataDir.load(data_dir)
    items = [(u, data.wav_scp[u]) for u in data.utts]
    job = EncodeJob(str(model_dir), str(out_dir), store=True, n_q=n_q, dtype=dtype, batch_seconds=batch_seconds,
                    shard_items=shard_items, flush_seconds=flush_seconds)
    report = encode_corpus(job, items, devices, durations=data.utt2dur, desc=f"tokenize {Path(data_dir).name}")
    for reason in report.failed.values():
        print(f"skipped: {reason}")
    return (f"{data_dir}: {len(items)} utterances, {len(report.written)} newly stored, {report.skipped} already "
            f"stored, {len(report.failed)} failed -> {out_dir}")


@recipe_main("tokenize")
def main(cfg: DictConfig) -> None:
    for split in cfg.splits:
        print(tokenize_split(str(cfg.model), Path(cfg.data_dir) / split, Path(cfg.out_dir) / split, int(cfg.nj),
                             cfg.n_q, ngpu=int(cfg.ngpu), device=str(cfg.device), dtype=str(cfg.dtype),
                             batch_seconds=float(cfg.batch_seconds), shard_items=int(cfg.shard_items),
                             flush_seconds=cfg.flush_seconds))


if __name__ == "__main__":
    main()
