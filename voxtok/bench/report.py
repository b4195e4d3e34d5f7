"""Benchmark report: CSV, markdown tables, bitrate tiers with rankings, rate-distortion plots and
one page (report.md and report.html) that brings them together.

Input is the list of per-system rows the runner writes to `results.json` (one dict per system:
name, status, measured kbit/s and every metric it has; NaN or missing = not measured).

Tiers follow DASB's split by measured bitrate: low < 1.5 kbit/s, medium 1.5..6, high > 6; the
identity row is the "reference" and is not ranked. Inside a tier, systems are ranked on each
metric in `RANKED_METRICS` that at least two of them have (1 = best), and ordered by their mean
rank over the metrics they have, so a tokenizer without a decoder is ranked on its probe and LM
results only.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from voxtok.atomic import atomic_write
from voxtok.errors import BadConfigError

TIERS = (("low", 0.0, 1.5), ("medium", 1.5, 6.0), ("high", 6.0, math.inf))
REFERENCE_TIER = "reference"


@dataclass(frozen=True)
class Column:
    """A report column: row key, header, format spec, and direction (True: higher is better)."""

    key: str
    header: str
    fmt: str
    higher_is_better: bool | None = None


RECONSTRUCTION = (
    Column("kbps", "kbit/s", ".2f"), Column("tier", "tier", "s"),
    Column("pesq_wb", "PESQ-wb", ".2f", True), Column("pesq_nb", "PESQ-nb", ".2f", True),
    Column("stoi", "STOI", ".3f", True), Column("si_sdr", "SI-SDR dB", ".1f", True),
    Column("mel_distance", "mel dist", ".3f", False), Column("speaker_similarity", "spk sim", ".3f", True),
    Column("dnsmos_sig", "DNSMOS SIG", ".2f", True), Column("dnsmos_bak", "DNSMOS BAK", ".2f", True),
    Column("dnsmos_ovrl", "DNSMOS OVRL", ".2f", True), Column("dnsmos_p808", "DNSMOS P.808", ".2f", True),
    Column("utmos", "UTMOS", ".2f", True), Column("wer", "WER", ".1%", False), Column("dwer", "dWER", ".1%", False), Column("dcer", "dCER", ".1%", False),
    Column("rtf_encode", "RTF enc", ".3f", False), Column("rtf_decode", "RTF dec", ".3f", False),
    Column("rtf", "RTF total", ".3f", False),
)
TOKENS = (
    Column("n_q", "Q", ".0f"), Column("codebook_size", "K", ".0f"), Column("frames_per_s", "frames/s", ".1f"),
    Column("tokens_per_s", "tokens/s", ".1f"), Column("token_bits_per_s", "bits/s", ".0f"),
    Column("entropy_bits_per_s", "entropy bits/s", ".0f"), Column("usage", "usage", ".1%", True),
    Column("entropy", "entropy (bits)", ".2f", True), Column("per_codebook", "per codebook usage / entropy", "s"),
)
DOWNSTREAM = (
    Column("probe_wer", "probe WER", ".1%", False), Column("probe_cer", "probe CER", ".1%", False),
    Column("probe_spk_acc", "speaker acc", ".1%", True), Column("lm_ppl", "LM ppl", ".1f"),
    Column("lm_bits_per_s", "LM bits/s", ".0f"), Column("lm_bits_ratio", "LM bits / token bits", ".3f"),
    Column("swuggy", "sWUGGY acc", ".1%", True),
)
ALL_COLUMNS = {c.key: c for c in (*RECONSTRUCTION, *TOKENS, *DOWNSTREAM)}
# One table with the headline number of each part (table.md; the other tables are in report.md).
SUMMARY = tuple(ALL_COLUMNS[k] for k in ("kbps", "tier", "pesq_wb", "stoi", "dnsmos_ovrl", "dwer", "speaker_similarity",
                                         "usage", "probe_cer", "probe_spk_acc", "lm_bits_per_s", "swuggy"))
RANKED_METRICS = ("pesq_wb", "stoi", "dwer", "speaker_similarity", "probe_wer", "probe_spk_acc", "swuggy")
PLOTTED_METRICS = ("pesq_wb", "stoi", "dwer")


def _number(value: Any) -> float | None:
    """A finite float, or None for missing / NaN / non-numeric."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def bitrate_tier(kbps: float | None) -> str:
    """"low" (< 1.5 kbit/s), "medium" (1.5..6) or "high" (> 6); "n/a" when unknown."""
    kbps = _number(kbps)
    if kbps is None:
        return "n/a"
    for name, low, high in TIERS:
        if low <= kbps < high or (name == "medium" and kbps == high):
            return name
    return "high"


def tier_of(row: dict) -> str:
    """The tier of a result row (the identity system is the reference)."""
    return REFERENCE_TIER if row.get("kind") == "identity" else bitrate_tier(row.get("kbps"))


def rank_tiers(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """{tier: [{"system", "mean_rank", "ranks": {metric: rank}}, ...] best first} (see module doc)."""
    ranked: dict[str, list[dict]] = {}
    for tier, *_ in TIERS:
        members = [r for r in rows if r.get("status") == "ok" and tier_of(r) == tier]
        if not members:
            continue
        ranks: dict[str, dict[str, int]] = {r["system"]: {} for r in members}
        for metric in RANKED_METRICS:
            better_high = ALL_COLUMNS[metric].higher_is_better
            have = [(r["system"], _number(r.get(metric))) for r in members]
            have = [(s, v) for s, v in have if v is not None]
            if len(have) < 2:
                continue
            have.sort(key=lambda sv: -sv[1] if better_high else sv[1])
            position = 0
            for i, (system, value) in enumerate(have):
                if i == 0 or value != have[i - 1][1]:  # equal values share a rank
                    position = i + 1
                ranks[system][metric] = position
        entries = []
        for r in members:
            mine = ranks[r["system"]]
            mean = sum(mine.values()) / len(mine) if mine else math.nan
            entries.append({"system": r["system"], "mean_rank": mean, "ranks": mine})
        entries.sort(key=lambda e: (math.isnan(e["mean_rank"]), e["mean_rank"], e["system"]))
        ranked[tier] = entries
    return ranked


def format_value(value: Any, fmt: str) -> str:
    """Cell text: "-" for missing/NaN, else `format(value, fmt)`."""
    if fmt == "s":
        return "-" if value in (None, "") else str(value)
    number = _number(value)
    return "-" if number is None else format(number, fmt)


def _per_codebook(row: dict) -> str:
    n_q = int(_number(row.get("n_q")) or 0)
    parts = [f"q{q}: {format_value(row.get(f'usage_q{q}'), '.0%')} / {format_value(row.get(f'entropy_q{q}'), '.2f')}"
             for q in range(min(n_q, 8))]
    return "; ".join(parts) + ("; ..." if n_q > 8 else "")


def _display_rows(rows: Sequence[dict]) -> list[dict]:
    return [{**r, "tier": tier_of(r), "per_codebook": _per_codebook(r) if r.get("n_q") else ""} for r in rows]


def table(rows: Sequence[dict], columns: Sequence[Column], keep_empty: bool = False) -> tuple[list[str], list[list[str]]]:
    """(headers, cells) of one table: a "system" column, then `columns`; rows with no value in any
    column are left out unless `keep_empty`."""
    headers = ["system", *[c.header for c in columns]]
    body = []
    for r in _display_rows(rows):
        cells = [format_value(r.get(c.key), c.fmt) for c in columns]
        informative = [cell for c, cell in zip(columns, cells) if c.key != "tier" and cell != "-"]
        if informative or keep_empty:
            name = r["system"] + ("" if r.get("status", "ok") == "ok" else " (FAILED)")
            body.append([name, *cells])
    return headers, body


def markdown_table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table ("|" in cells escaped)."""
    esc = lambda s: str(s).replace("|", "\\|")
    lines = ["| " + " | ".join(map(esc, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in body]
    return "\n".join(lines) + "\n"


def html_table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """An HTML table with escaped cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in body)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n"


def ranking_tables(rows: Sequence[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(tier title, headers, cells) per tier with ranked systems."""
    out = []
    for tier, entries in rank_tiers(rows).items():
        low, high = next((lo, hi) for name, lo, hi in TIERS if name == tier)
        bounds = f"{low:g}-{high:g} kbit/s" if math.isfinite(high) else f"> {low:g} kbit/s"
        headers = ["rank", "system", "mean rank", *[ALL_COLUMNS[m].header for m in RANKED_METRICS]]
        body = [[str(i + 1), e["system"], format_value(e["mean_rank"], ".2f"),
                 *[str(e["ranks"].get(m, "-")) for m in RANKED_METRICS]] for i, e in enumerate(entries)]
        out.append((f"{tier} ({bounds})", headers, body))
    return out


def write_csv(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """One line per system, one column per key that any row has (system/status/kbps first)."""
    first = ["system", "status", "error", "kind", "spec", "kbps", "tier"]
    display = _display_rows(rows)
    keys = first + sorted({k for r in display for k in r if k not in first and not isinstance(r[k], (dict, list))})
    path = Path(path)
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in display:
            writer.writerow({k: r.get(k, "") for k in keys})
    return path


def plot_rate_distortion(rows: Sequence[dict], out_dir: str | os.PathLike) -> list[Path]:
    """rd_<metric>.png (metric vs kbit/s, log scale) for PESQ-wb, STOI and dWER; points of one
    family (same checkpoint or tool) are joined; the identity row is a dashed line; tier
    boundaries are dotted. Returns the files written (a metric no system has is skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out_dir = Path(out_dir)
    written = []
    for metric in PLOTTED_METRICS:
        col = ALL_COLUMNS[metric]
        points = [(r, _number(r.get("kbps")), _number(r.get(metric))) for r in rows if r.get("status") == "ok"]
        systems = [(r, x, y) for r, x, y in points if x and y is not None and tier_of(r) != REFERENCE_TIER]
        if not systems:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        families: dict[str, list[tuple[float, float]]] = {}
        for r, x, y in systems:
            families.setdefault(r.get("family", r["system"]), []).append((x, y))
            ax.scatter([x], [y], s=28, zorder=3)
            ax.annotate(r["system"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for pts in families.values():
            if len(pts) > 1:
                pts.sort()
                ax.plot(*zip(*pts), color="grey", linewidth=0.8, zorder=2)
        for r, _, y in points:
            if y is not None and tier_of(r) == REFERENCE_TIER:
                ax.axhline(y, linestyle="--", color="black", linewidth=0.8, label=r["system"])
        for boundary in (1.5, 6.0):
            ax.axvline(boundary, linestyle=":", color="grey", linewidth=0.8)
        ax.set_xscale("log")
        # Readable bitrate ticks instead of bare powers of ten.
        lows, highs = min(x for _, x, _ in systems), max(x for _, x, _ in systems)
        ticks = [t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64) if lows / 1.5 <= t <= highs * 1.5]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("measured bitrate (kbit/s)")
        ax.set_ylabel(col.header + (" (lower is better)" if col.higher_is_better is False else ""))
        ax.set_title(f"{col.header} vs bitrate")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"rd_{metric}.png"
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=120)
        plt.close(fig)
        written.append(path)
    return written


_SECTIONS = (("Reconstruction", RECONSTRUCTION), ("Token statistics", TOKENS), ("Downstream probes and token LM", DOWNSTREAM))


def _notes(rows: Sequence[dict]) -> list[str]:
    lines = []
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"{r['system']}: FAILED ({r.get('error', 'no reason recorded')})")
        elif r.get("notes"):
            lines.append(f"{r['system']}: {r['notes']}")
    return lines


def _describe(meta: dict) -> list[str]:
    keys = ("test_dir", "num_test_utts", "test_hours", "train_dir", "num_train_utts", "eval_sample_rate",
            "probe_preset", "speaker_encoder", "device", "created")
    return [f"{k}: {meta[k]}" for k in keys if k in meta]


def write_report(rows: Sequence[dict], out_dir: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write results.csv, table.md (the summary table), rd_*.png, report.md and report.html (summary,
    reconstruction, token and downstream tables, tier rankings, plots, notes) into `out_dir`;
    returns the path of report.md."""
    if not rows:
        raise BadConfigError("no benchmark results to report")
    meta = meta or {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "results.csv")
    plots = plot_rate_distortion(rows, out_dir)
    summary = table(rows, SUMMARY, keep_empty=True)
    tables = [(title, *table(rows, cols, keep_empty=title == "Reconstruction")) for title, cols in _SECTIONS]
    rankings = ranking_tables(rows)

    md = ["# VoxTok tokenizer benchmark", ""] + [f"- {line}" for line in _describe(meta)] + [""]
    md += ["## Summary", "", markdown_table(*summary)]
    for title, headers, body in tables:
        md += [f"## {title}", "", markdown_table(headers, body)]
    md += ["## Ranking per bitrate tier", "",
           f"Ranked on {', '.join(ALL_COLUMNS[m].header for m in RANKED_METRICS)} (1 = best; a metric counts "
           "when two systems of the tier have it); ordered by mean rank.", ""]
    for title, headers, body in rankings:
        md += [f"### {title}", "", markdown_table(headers, body)]
    if plots:
        md += ["## Rate-distortion", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    notes = _notes(rows)
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md_text = "\n".join(md)
    with atomic_write(out_dir / "table.md") as handle:
        handle.write(markdown_table(*summary))
    with atomic_write(out_dir / "report.md") as handle:
        handle.write(md_text)

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>VoxTok benchmark</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:32%;margin-right:1%}</style></head><body>",
             "<h1>VoxTok tokenizer benchmark</h1><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in _describe(meta)] + ["</ul>"]
    parts += ["<h2>Summary</h2>", html_table(*summary)]
    for title, headers, body in tables:
        parts += [f"<h2>{html.escape(title)}</h2>", html_table(headers, body)]
    parts.append("<h2>Ranking per bitrate tier</h2>")
    for title, headers, body in rankings:
        parts += [f"<h3>{html.escape(title)}</h3>", html_table(headers, body)]
    if plots:
        parts += ["<h2>Rate-distortion</h2><div>"] + [f"<img src='{p.name}' alt='{p.stem}'>" for p in plots] + ["</div>"]
    if notes:
        parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    parts.append("</body></html>\n")
    with atomic_write(out_dir / "report.html") as handle:
        handle.write("\n".join(parts))
    return out_dir / "report.md"


def load_results(out_dir: str | os.PathLike) -> tuple[list[dict], dict]:
    """(rows, meta) from a benchmark folder's results.json."""
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        raise BadConfigError("no results.json: not a benchmark output folder (run `voxtok bench run` first)",
                             out_dir)
    data = json.loads(path.read_text())
    return data["rows"], data.get("meta", {})
