"""The demo as users start it (`python demo/app.py`) on 127.0.0.1, over an exp dir of tiny random
models, shared by the gradio_client and browser tests (started once per test session)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from voxtok.audio import save_audio

from tts_fixtures import model_config, save_cosyvoice_exp, save_flowomni_exp, tiny_flowomni, tiny_tts_parts

ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 120.0
MAX_TEXT_CHARS = 80


@dataclass
class DemoServer:
    """A running demo: its URL, exp dir, a reference wav (2 s of speech) and the server log."""

    url: str
    exp: Path
    reference: Path
    proc: subprocess.Popen
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's output (for failure messages)."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """Terminate the server (and kill it if it does not exit within 10 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @contextmanager
    def models_hidden(self):
        """Move everything out of the exp dir for the duration (the server re-scans it per request)."""
        stash = Path(tempfile.mkdtemp(prefix="hidden-", dir=self.exp.parent))
        moved = [p for p in self.exp.iterdir()]
        for p in moved:
            p.rename(stash / p.name)
        try:
            yield
        finally:
            for p in moved:
                (stash / p.name).rename(p)
            stash.rmdir()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(exp: Path, log: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Launch `python demo/app.py --exp EXP` on a free port (does not wait) -> (process, url)."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(ROOT / "demo" / "app.py"), "--exp", str(exp), "--host", "127.0.0.1",
           "--port", str(port), "--threads", "1", *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_until_ready(server: DemoServer, timeout: float = READY_SECONDS) -> None:
    """Poll the page until it answers; fail with the server log if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"demo server exited with status {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"demo server not ready after {timeout:.0f} s:\n{server.log_tail()}")


def write_tiny_exp(exp: Path) -> None:
    """A recipe-shaped exp dir: both TTS pipelines, the S3 tokenizer, an 8-quantizer RVQ codec and a
    benchmark table with one plot (all random-weight tiny models)."""
    from PIL import Image

    from voxtok.registry import build

    parts = tiny_tts_parts(exp.parent / "spk")
    save_cosyvoice_exp(parts, exp)
    save_flowomni_exp(tiny_flowomni(parts.frontend), parts, exp)
    torch.manual_seed(0)
    build("codec", "dmcodec", model_config("codec/rvq_tiny.yaml")).save_pretrained(exp / "codec_rvq" / "model")
    (exp / "bench").mkdir(parents=True, exist_ok=True)
    (exp / "bench" / "table.md").write_text("| system | kbit/s | PESQ-wb |\n|---|---|---|\n| rvq | 3.20 | 1.10 |\n")
    Image.new("RGB", (64, 48), (40, 90, 160)).save(exp / "bench" / "rd_pesq_wb.png")


_shared: DemoServer | None = None


def shared_demo_server(config, tmp_path_factory, speech: np.ndarray) -> DemoServer:
    """The session's demo server (started on first use, stopped when the session ends)."""
    global _shared
    if _shared is not None:
        return _shared
    root = tmp_path_factory.mktemp("demo")
    exp = root / "exp"
    exp.mkdir()
    proc, url = start_demo(exp, root / "server.log", "--max-text-chars", str(MAX_TEXT_CHARS))
    server = DemoServer(url, exp, root / "reference.wav", proc, root / "server.log")
    config.add_cleanup(server.stop)
    # Models are written while the server starts up: it finds them on the first request.
    write_tiny_exp(exp)
    save_audio(server.reference, torch.from_numpy(speech)[None], 16000)
    wait_until_ready(server)
    _shared = server
    return server

