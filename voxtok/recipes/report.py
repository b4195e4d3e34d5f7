"""The recipe's last stage: one report page for everything a run produced, and a one-screen summary.

Example:
    python -m voxtok.recipes.report exp_dir=exp/mini

Reads what the stages wrote under exp_dir (codec and S3 evaluation tables, TTS evaluation,
benchmark report and plots, stage timings) and writes exp_dir/report/:
    index.html   tables, rate-distortion plots and audio players (codec reconstructions, cloned voices)
    report.md    the same tables in markdown
    summary.txt  the one-screen summary the recipe prints at the end
Audio and plots are copied next to the page, so the folder can be moved or served as is.
Missing parts (a stage not run) are listed as such rather than failing the report.
"""

from __future__ import annotations

import html
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig

from voxtok.atomic import atomic_write
from voxtok.bench.report import html_table
from voxtok.recipes import recipe_main

SECTIONS = (  # (title, table file relative to exp_dir; glob allowed)
    ("Codec reconstruction vs Codec2 (test speakers)", "codec_*/eval/table.md"),
    ("S3 tokenizer: ASR by greedy CTC and codebook use", "s3/eval/table.md"),
    ("TTS: zero-shot cloning of the test speakers", "tts/eval/table.md"),
    ("Tokenizer benchmark (DASB-style)", "bench/table.md"),
)
MAX_CLIPS = 4


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first pipe table in `text` -> (headers, rows); ([], []) when there is none."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return [], []
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return cells[0], [row for row in cells[2:]]


def stage_times(exp_dir: Path) -> list[tuple[str, int, float]]:
    """[(stage dir name, seconds, finish time)] in stage order, from run.sh's `seconds` and `.done` files."""
    found = []
    for d in exp_dir.glob("stage*_*"):
        if (d / "seconds").is_file() and (d / ".done").is_file():
            found.append((int(d.name[5:].split("_")[0]), d.name, int((d / "seconds").read_text().strip() or 0),
                          (d / ".done").stat().st_mtime))
    return [(name, sec, end) for _, name, sec, end in sorted(found)]


def wall_seconds(times: list[tuple[str, int, float]]) -> int:
    """Time covered by the stages: stages that ran side by side count once, pauses between runs not at all."""
    spans = sorted((end - sec, end) for _, sec, end in times)
    total, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            total += (cur_end - cur_start) if cur_end is not None else 0.0
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return int(round(total))


def _clips(folder: Path, out: Path, label: str) -> list[tuple[str, str]]:
    """Copy up to MAX_CLIPS wavs of `folder` to out/audio/<label>/ -> [(name, relative path)]."""
    wavs = sorted(folder.glob("*.wav"))[:MAX_CLIPS]
    target = out / "audio" / label
    target.mkdir(parents=True, exist_ok=True)
    pairs = []
    for w in wavs:
        shutil.copy2(w, target / w.name)
        pairs.append((w.stem, f"audio/{label}/{w.name}"))
    return pairs


def audio_sections(exp_dir: Path, out: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(title, clips)] for codec reconstructions and cloned voices that exist."""
    groups = []
    for eval_dir in sorted(exp_dir.glob("codec_*/eval/samples")):
        for system in sorted(p for p in eval_dir.iterdir() if p.is_dir()):
            groups.append((f"{eval_dir.parts[-3]}: {system.name}", _clips(system, out, f"{eval_dir.parts[-3]}_{system.name}")))
    for synth in sorted(exp_dir.glob("tts/synth_*")):
        groups.append((f"cloned voices: {synth.name[6:]}", _clips(synth / "wav", out, synth.name)))
        if (synth / "resynth" / "wav").is_dir():
            groups.append(("vocoder resynthesis of real mels", _clips(synth / "resynth" / "wav", out, synth.name + "_resynth")))
    return [(t, c) for t, c in groups if c]


def build_report(exp_dir: str | os.PathLike) -> Path:
    """Write exp_dir/report/{index.html,report.md,summary.txt}; returns the report folder."""
    exp_dir = Path(exp_dir)
    out = exp_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# VoxTok report: {exp_dir}", ""]
    page = [f"<html><head><meta charset='utf-8'><title>VoxTok report: {html.escape(str(exp_dir))}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:48%}</style></head><body>",
            f"<h1>VoxTok report: {html.escape(str(exp_dir))}</h1>"]
    summary = [f"VoxTok run {exp_dir}"]
    for title, pattern in SECTIONS:
        files = sorted(exp_dir.glob(pattern))
        md.append(f"## {title}\n")
        page.append(f"<h2>{html.escape(title)}</h2>")
        if not files:
            md.append("(not run)\n")
            page.append("<p>(not run)</p>")
            summary.append(f"\n{title}: not run")
            continue
        for f in files:
            text = f.read_text()
            md.append(text)
            headers, rows = parse_markdown_table(text)
            page.append(html_table(headers, rows) if headers else f"<pre>{html.escape(text)}</pre>")
            summary.append(f"\n{title}:\n{text.strip()}")
    plots = sorted((exp_dir / "bench").glob("*.png"))
    if plots:
        (out / "plots").mkdir(exist_ok=True)
        page.append("<h2>Rate-distortion</h2>")
        for p in plots:
            shutil.copy2(p, out / "plots" / p.name)
            page.append(f"<img src='plots/{p.name}' alt='{p.stem}'>")
            md.append(f"![{p.stem}](plots/{p.name})")
    for title, clips in audio_sections(exp_dir, out):
        page.append(f"<h3>{html.escape(title)}</h3>")
        page.extend(f"<div>{html.escape(name)} <audio controls src='{src}'></audio></div>" for name, src in clips)
    times = stage_times(exp_dir)
    if times:
        rows = [[name, f"{sec // 60}:{sec % 60:02d}"] for name, sec, _ in times]
        total = wall_seconds(times)
        rows.append(["total (wall clock; paired stages ran side by side)", f"{total // 60}:{total % 60:02d}"])
        page.append("<h2>Stage run times</h2>" + html_table(["stage", "min:s"], rows))
        md.append("## Stage run times\n\n| stage | min:s |\n|---|---:|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows))
        summary.append("\nstage times: " + ", ".join(f"{n.split('_', 1)[1]} {s}s" for n, s, _ in times)
                       + f"; total (wall clock) {total // 60} min {total % 60} s")
    page.append("</body></html>")
    summary.append(f"\nreport: {out / 'index.html'}")
    for name, text in (("index.html", "\n".join(page)), ("report.md", "\n".join(md) + "\n"),
                       ("summary.txt", "\n".join(summary) + "\n")):
        with atomic_write(out / name) as handle:
            handle.write(text)
    return out


@recipe_main("report")
def main(cfg: DictConfig) -> None:
    out = build_report(cfg.exp_dir)
    print((out / "summary.txt").read_text())


if __name__ == "__main__":
    main()
