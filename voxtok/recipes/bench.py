"""Benchmark stage: compare tokenizers and codecs on a test data dir and write one report.

Example:
    python -m voxtok.recipes.bench test_dir=data/test train_dir=data/train out_dir=exp/mini/bench \
        'systems=[identity,codec2_1200,codec2_3200,opus_6k,opus_12k,"vtk:exp/mini/codec_wavtokenizer/model@n_q=1"]'

Specs with ':', '@' or '=' must be double-quoted inside Hydra's list syntax, as above.
Settings: configs/bench.yaml (the fields of `voxtok.bench.runner.BenchConfig`). Writes
out_dir/report.md (+ report.html, results.csv, table.md, rd_*.png, per_utterance.csv); results
are cached per system in out_dir/systems/, so re-running after adding a system only runs that one.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from voxtok.recipes import recipe_main


def bench_config(cfg: DictConfig):
    """The Hydra config as a `BenchConfig` (Hydra's own keys dropped)."""
    from voxtok.bench.runner import BenchConfig

    values = OmegaConf.to_container(cfg, resolve=True)
    values.pop("hydra_dir", None)
    return BenchConfig.from_mapping(values)


@recipe_main("bench")
def main(cfg: DictConfig) -> None:
    from voxtok.bench.runner import run_benchmark

    bench = bench_config(cfg)
    rows = run_benchmark(bench)
    for row in rows:
        if row.get("status") != "ok":
            print(f"failed: {row['system']}: {row.get('error')}")
    print(open(f"{bench.out_dir}/table.md").read())
    print(f"report: {bench.out_dir}/report.md")


if __name__ == "__main__":
    main()
