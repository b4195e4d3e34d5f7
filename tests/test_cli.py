"""`voxtok` CLI: every command has --help with an example; errors are one line with exit 2."""

import argparse
import subprocess
import sys

import pytest

from voxtok.cli import build_parser, main


def _leaf_commands(parser, prefix=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix
        return
    for name, child in subs[0].choices.items():
        yield from _leaf_commands(child, prefix + (name,))


LEAVES = list(_leaf_commands(build_parser()))


def test_there_are_commands():
    assert ("data", "validate") in LEAVES and ("data", "synth") in LEAVES


@pytest.mark.parametrize("cmd", LEAVES, ids=[" ".join(c) for c in LEAVES])
def test_every_command_has_help_with_example(cmd, capsys):
    with pytest.raises(SystemExit) as done:
        main([*cmd, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"voxtok {' '.join(cmd)}" in out


def test_console_script_help_runs_in_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "voxtok.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "example:" in out.stdout


def test_missing_data_dir_is_one_line_exit_2(tmp_path, capsys):
    assert main(["data", "validate", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "missing" in err


def test_a_reader_that_leaves_early_is_not_an_error():
    """`voxtok tts speakers | head -1`: the closed pipe ends the command quietly with status 0."""
    import subprocess
    import sys

    code = ("import types, voxtok.cli as c\n"
            "def chatty(args):\n"
            "    for _ in range(200000): print('spk' * 20)\n"
            "args = types.SimpleNamespace(handler=chatty)\n"
            "c.build_parser = lambda: types.SimpleNamespace(parse_args=lambda argv: args)\n"
            "raise SystemExit(c.main([]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(100)
    proc.stdout.close()  # the reader leaves
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err
