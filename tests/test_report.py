"""The recipe report: tables gathered from an exp dir, stage times counted on the wall clock."""

from __future__ import annotations

import os

from voxtok.recipes.report import build_report, parse_markdown_table, stage_times, wall_seconds


def _stage(exp, name: str, seconds: int, end: float) -> None:
    d = exp / name
    d.mkdir(parents=True)
    (d / "seconds").write_text(str(seconds))
    (d / ".done").touch()
    os.utime(d / ".done", (end, end))


def test_paired_stages_count_once_and_pauses_not_at_all(tmp_path):
    _stage(tmp_path, "stage0_data", 10, 1000.0)
    _stage(tmp_path, "stage2_codec", 100, 1100.0)   # ran 1000-1100
    _stage(tmp_path, "stage3_s3", 90, 1095.0)       # ran 1005-1095, beside the codec
    _stage(tmp_path, "stage4_tokenize", 20, 5020.0)  # a later re-run after a pause
    times = stage_times(tmp_path)
    assert [t[0] for t in times] == ["stage0_data", "stage2_codec", "stage3_s3", "stage4_tokenize"]
    assert wall_seconds(times) == 10 + 100 + 20


def test_report_gathers_tables_and_lists_what_did_not_run(tmp_path):
    (tmp_path / "s3" / "eval").mkdir(parents=True)
    (tmp_path / "s3" / "eval" / "table.md").write_text("| system | CER |\n|---|---|\n| s3 | 70.2% |\n")
    (tmp_path / "tts" / "synth_cosyvoice" / "wav").mkdir(parents=True)
    (tmp_path / "tts" / "synth_cosyvoice" / "wav" / "u1.wav").write_bytes(b"RIFF")
    _stage(tmp_path, "stage3_s3", 60, 2000.0)
    out = build_report(tmp_path)
    page = (out / "index.html").read_text()
    assert "<td>70.2%</td>" in page and "(not run)" in page and "audio/synth_cosyvoice/u1.wav" in page
    assert (out / "audio" / "synth_cosyvoice" / "u1.wav").is_file()
    assert "total (wall clock) 1 min 0 s" in (out / "summary.txt").read_text()
    assert parse_markdown_table("no table") == ([], [])
