"""VoxTok Gradio demo: voice cloning, a codec lab and the benchmark report, served from a recipe's exp dir.

Example:
    python demo/app.py --exp egs/libritts/exp/mini --port 7860
    # then open http://127.0.0.1:7860

The work happens in voxtok/demo.py (DemoBackend); this file only lays out the page and wires
events. Each event has an API name (/clone, /codec, /decode_tokens, /benchmark, /voices,
/codec_quantizers) for gradio_client. Failures show as a warning toast and a message, never a
traceback (the server log keeps those).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import threading
from pathlib import Path

# No network at run time: no usage analytics, no update checks.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from voxtok.demo import (  # noqa: E402
    DemoBackend, DemoLimits, Outcome, pipeline_class, reference_seconds_range, tts_models)
from voxtok.device import add_device_options  # noqa: E402
from voxtok.tts.pipeline import MODE_LABELS  # noqa: E402

EXAMPLE = "python demo/app.py --exp egs/libritts/exp/mini --port 7860"


def _message(outcome: Outcome) -> str:
    """Show problems as a toast too; the markdown keeps the text next to the outputs."""
    import gradio as gr

    if not outcome.ok or outcome.warning:
        gr.Warning(outcome.message)
        return f"**⚠️ {outcome.message}**"
    return outcome.message


def build_demo(backend: DemoBackend):
    """The page (a gr.Blocks): three tabs over `backend`."""
    import gradio as gr

    limits = backend.limits
    models = tts_models()
    model_choices = [(label, key) for key, label in models.items()]
    mode_choices = [(label, key) for key, label in MODE_LABELS.items()]
    # Which models each control applies to, from the pipelines' capability attributes.
    cfg_models = " / ".join(label for key, label in models.items() if pipeline_class(key).cfg)
    streaming_models = " / ".join(label for key, label in models.items() if pipeline_class(key).streaming)

    def clone(text, reference, reference_text, model, mode, speaker, steps, cfg, seed, streaming):
        outcome = backend.clone(text, reference, reference_text, model, mode, speaker, steps, cfg, seed, streaming)
        return outcome.get("audio"), _message(outcome)

    def voices(model):
        ids = backend.stored_voices(model) if model else []
        capabilities = pipeline_class(model) if model else None
        return (gr.Dropdown(choices=ids, value=ids[0] if ids else None),
                gr.Slider(interactive=capabilities is None or capabilities.cfg),
                gr.Checkbox(value=False, interactive=capabilities is None or capabilities.streaming))

    def codec_quantizers(codec):
        try:
            n_q = int(backend.codec_info(codec).get("n_q", 1))
        except Exception:  # unknown or unreadable codec: the run button's message says why
            n_q = 1
        return gr.Dropdown(choices=list(range(1, n_q + 1)), value=n_q)

    def codec_run(audio, codec, n_q):
        o = backend.codec_roundtrip(audio, codec, n_q)
        return o.get("audio"), o.get("picture"), o.get("n_tokens"), o.get("kbps"), o.get("tokens"), _message(o)

    def decode(token_file):
        o = backend.decode_tokens(token_file)
        return o.get("audio"), _message(o)

    def benchmark():
        o = backend.benchmark()
        return o.get("markdown"), o.get("plots") or [], o.message

    def on_load():
        codecs = backend.codec_choices()
        first = codecs[0][1] if codecs else None
        tts = backend.tts_manifests()
        model = next(iter(tts), model_choices[0][1])
        return (backend.overview(), gr.Radio(value=model), gr.Dropdown(choices=codecs, value=first),
                codec_quantizers(first), *voices(model), *benchmark())

    with gr.Blocks(title="VoxTok demo") as demo:
        gr.Markdown("# VoxTok — voice cloning and codec lab")
        overview = gr.Markdown(elem_id="overview")
        with gr.Tab("Voice cloning"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label=f"Text to speak (up to {limits.max_text_chars} characters)", lines=2,
                                      max_length=limits.max_text_chars, elem_id="tts-text")
                    shortest = reference_seconds_range()[0]
                    reference = gr.Audio(label=f"Reference voice ({shortest:g}–{limits.max_reference_seconds:g} s)",
                                         sources=["upload", "microphone"], type="filepath", elem_id="tts-reference")
                    reference_text = gr.Textbox(label="Reference transcript (needed for zero-shot)",
                                                elem_id="tts-reference-text")
                    with gr.Row():
                        model = gr.Radio(model_choices, value=model_choices[0][1], label="Model", elem_id="tts-model")
                        mode = gr.Radio(mode_choices, value="zero_shot", label="Mode", elem_id="tts-mode")
                    speaker = gr.Dropdown([], label="Stored voices (for stored-speaker mode)",
                                          allow_custom_value=True, elem_id="tts-speaker")
                    with gr.Row():
                        steps = gr.Slider(1, 50, value=10, step=1, label="Sampling steps (flow matching)")
                        cfg = gr.Slider(0.0, 3.0, value=0.7, step=0.1, label=f"CFG strength ({cfg_models})")
                    with gr.Row():
                        seed = gr.Number(0, precision=0, label="Seed", minimum=0)
                        streaming = gr.Checkbox(False, label=f"Streaming ({streaming_models})")
                    clone_btn = gr.Button("Clone voice", variant="primary", elem_id="tts-run")
                with gr.Column():
                    cloned = gr.Audio(label="Cloned voice", type="filepath", interactive=False, elem_id="tts-output")
                    clone_msg = gr.Markdown(label="Message", elem_id="tts-message")
        with gr.Tab("Codec lab"):
            with gr.Row():
                with gr.Column():
                    lab_audio = gr.Audio(label=f"Audio (up to {limits.max_audio_seconds:g} s)",
                                         sources=["upload", "microphone"], type="filepath", elem_id="codec-input")
                    codec = gr.Dropdown([], label="Codec", allow_custom_value=True, elem_id="codec-name")
                    n_q = gr.Dropdown([1], value=1, label="Quantizers kept (first N codebooks)", allow_custom_value=True,
                                      elem_id="codec-nq")
                    codec_btn = gr.Button("Encode and decode", variant="primary", elem_id="codec-run")
                with gr.Column():
                    recon = gr.Audio(label="Reconstruction", type="filepath", interactive=False, elem_id="codec-output")
                    with gr.Row():
                        n_tokens = gr.Number(label="Tokens", interactive=False)
                        kbps = gr.Number(label="Bitrate (kbit/s)", interactive=False)
                    codec_msg = gr.Markdown(label="Message", elem_id="codec-message")
            picture = gr.Image(label="Spectrograms: original (top) and reconstruction", type="filepath",
                               interactive=False, elem_id="codec-picture")
            with gr.Row():
                tokens_out = gr.File(label="Token file (.vtk) to download", interactive=False, elem_id="codec-vtk")
                with gr.Column():
                    tokens_in = gr.File(label="Decode a .vtk token file", file_types=[".vtk"], elem_id="vtk-input")
                    decode_btn = gr.Button("Decode tokens", elem_id="vtk-run")
                    decoded = gr.Audio(label="Decoded audio", type="filepath", interactive=False, elem_id="vtk-output")
                    decode_msg = gr.Markdown(label="Message", elem_id="vtk-message")
        with gr.Tab("Benchmark"):
            bench_msg = gr.Markdown(label="Message", elem_id="bench-message")
            bench_md = gr.Markdown(label="Report", elem_id="bench-report")
            plots = gr.Gallery(label="Plots", columns=3, height="auto")
            bench_btn = gr.Button("Reload report")

        clone_btn.click(clone, [text, reference, reference_text, model, mode, speaker, steps, cfg, seed, streaming],
                        [cloned, clone_msg], api_name="clone")
        model.change(voices, model, [speaker, cfg, streaming], api_name="voices")
        codec.change(codec_quantizers, codec, n_q, api_name="codec_quantizers")
        codec_btn.click(codec_run, [lab_audio, codec, n_q], [recon, picture, n_tokens, kbps, tokens_out, codec_msg],
                        api_name="codec")
        decode_btn.click(decode, tokens_in, [decoded, decode_msg], api_name="decode_tokens")
        bench_btn.click(benchmark, None, [bench_md, plots, bench_msg], api_name="benchmark")
        demo.load(on_load, None, [overview, model, codec, n_q, speaker, cfg, streaming, bench_md, plots, bench_msg],
                  api_visibility="private")
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="VoxTok demo: voice cloning (CosyVoice-style / Flow-Omni), codec lab and benchmark report, "
                    "with the models of a recipe's exp dir.",
        epilog=f"example:\n  {EXAMPLE}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", default="egs/libritts/exp/mini",
                   help="recipe exp dir (tts/*.yaml, codec_*/model, s3/model, bench/, report/); re-scanned per request")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to serve the network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-text-chars", type=int, default=300, help="longest text to speak")
    p.add_argument("--max-audio-seconds", type=float, default=30.0, help="longest codec-lab upload")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_device_options(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the server (blocks until Ctrl-C); exit status 2 with a one-line message on bad options."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exp = Path(args.exp)
    if not exp.is_dir():
        print(f"error: {exp}: exp dir does not exist (run the recipe first: cd egs/libritts && ./run.sh --mini true)",
              file=sys.stderr)
        return 2
    try:
        limits = DemoLimits(max_text_chars=args.max_text_chars, max_audio_seconds=args.max_audio_seconds)
        backend = DemoBackend(exp, limits, device=args.device, dtype=args.dtype)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    atexit.register(backend.close)
    threading.Thread(target=backend.warm_up, name="warm-up", daemon=True).start()
    import gradio as gr

    # System fonts only: the default theme would fetch Google Fonts, and the demo must work offline.
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    demo = build_demo(backend)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, show_error=True, ssr_mode=False,
                allowed_paths=[str(exp.resolve()), str(backend.work_dir)], max_file_size="50mb",
                footer_links=["api"], theme=theme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
