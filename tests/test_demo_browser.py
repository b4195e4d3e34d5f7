"""End to end in a real headless browser: Debian's chromium (driven by playwright, no browser
download) uploads a wav, clones a voice, runs the codec lab, waits for the audio, takes screenshots.

Screenshots go to the test's tmp dir; set VOXTOK_DEMO_SCREENSHOTS=docs to refresh the README's
(docs/demo_screenshot.png: voice cloning, docs/demo_codec_lab.png: the codec lab).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip("Debian's chromium is not installed (tools/install_system.sh installs it)", allow_module_level=True)
pytest.importorskip("gradio_client", reason="the demo extra (gradio) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the demo extra)")

from demo_server import shared_demo_server  # noqa: E402

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, speech):
    return shared_demo_server(request.config, tmp_path_factory, speech)


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        try:
            yield page
        finally:
            browser.close()


def audio_ready(page, elem_id: str) -> str:
    """Wait until the audio output `elem_id` holds a file; returns its download name."""
    link = page.locator(f"#{elem_id} a[download]")
    link.wait_for(state="attached")
    name = link.get_attribute("download")
    assert name and name.endswith(".wav")
    return name


def save_shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    target = os.environ.get("VOXTOK_DEMO_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)
    return path


def test_clone_a_voice_and_run_the_codec_lab_in_chromium(server, page, tmp_path):
    page.goto(server.url, wait_until="domcontentloaded")
    # The page fills its model lists on load; wait for that before using them.
    page.locator("#overview").get_by_text("Models from").wait_for()

    page.locator("#tts-text textarea").fill("Hello there, this is my voice.")
    page.locator("#tts-reference input[type=file]").set_input_files(str(server.reference))
    page.locator("#tts-reference-text textarea").fill("She sells sea shells by the sea shore.")
    page.locator("#tts-run").click()
    page.locator("#tts-message").get_by_text("s of speech in the reference voice").wait_for()
    assert audio_ready(page, "tts-output").startswith("cosyvoice_zero_shot")
    save_shot(page, tmp_path, "demo_screenshot.png")

    page.get_by_role("tab", name="Codec lab").click()
    page.locator("#codec-input input[type=file]").set_input_files(str(server.reference))
    page.locator("#codec-run").click()
    page.locator("#codec-message").get_by_text("tokens for 2.00 s").wait_for()
    assert audio_ready(page, "codec-output").startswith("reference.codec_rvq.q8")
    page.locator("#codec-picture img").wait_for()
    assert page.locator("#codec-vtk").get_by_text(".vtk").count() >= 1
    save_shot(page, tmp_path, "demo_codec_lab.png")
