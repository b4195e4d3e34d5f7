"""What the Gradio demo (demo/app.py) does, without any UI code, so tests can call it directly.

`DemoBackend(exp_dir)` serves the models a recipe's exp dir holds. The dir is re-scanned on every
request, so models trained while the demo runs show up without a restart:

    tts/<pipeline>.yaml (cosyvoice, flowomni)   TTS pipeline manifests (voxtok/tts/manifest.py); a folder
                                                written by `voxtok convert cosyvoice` has the same layout
    codec_<name>/model, s3/model                codec checkpoints (save_pretrained folders)
    report/report.md, bench/report.md, bench/table.md, bench/*.png, report/*.png
                                                the latest benchmark report

Models run on the backend's device and precision (`DemoBackend(..., device="cuda", dtype="bfloat16")`,
the demo's --device / --dtype); audio comes back to the CPU as float32 to be saved.

Every request returns an `Outcome`: its outputs plus a short markdown message. Nothing raises:
a VoxTokError becomes its one-line message (upload temp paths shortened to the file name), any
other failure is logged with its traceback on the server and reported in one line.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from voxtok.device import precision, resolve_device, resolve_dtype
from voxtok.errors import BadAudioError, BadConfigError, BadTextError, BadTokenFileError, VoxTokError
from voxtok.registry import registered
from voxtok.tts.manifest import read_manifest
from voxtok.tts.pipeline import MODE_LABELS, SpeakerTable, TTSPipeline, timed_stream

log = logging.getLogger("voxtok.demo")


def tts_models() -> dict[str, str]:
    """The registered TTS pipelines: name -> label (e.g. cosyvoice -> CosyVoice-style), by name."""
    return {name: cls.label for name, cls in sorted(registered("pipeline").items())}


def pipeline_class(model: str) -> type[TTSPipeline]:
    """The pipeline class of `model` (name or label), whose attributes say what it can do."""
    return registered("pipeline")[_pick(model, tts_models(), "model")]


def reference_seconds_range() -> tuple[float, float]:
    """(shortest, longest) reference audio that some registered pipeline accepts."""
    classes = registered("pipeline").values()
    return min(c.min_prompt_seconds for c in classes), max(c.max_prompt_seconds for c in classes)


@dataclass(frozen=True)
class DemoLimits:
    """Input limits: characters of text to speak, seconds of codec-lab audio, reference seconds."""

    max_text_chars: int = 300
    max_audio_seconds: float = 30.0
    max_reference_seconds: float = TTSPipeline.max_prompt_seconds

    def __post_init__(self):
        if self.max_text_chars < 1:
            raise BadConfigError(f"max_text_chars must be >= 1, got {self.max_text_chars}")
        if self.max_audio_seconds <= 0:
            raise BadConfigError(f"max_audio_seconds must be > 0, got {self.max_audio_seconds}")
        low, high = reference_seconds_range()
        if not low < self.max_reference_seconds <= high:
            raise BadConfigError(f"max_reference_seconds must be in ({low:g}, {high:g}], "
                                 f"got {self.max_reference_seconds}")


@dataclass
class Outcome:
    """One request's result: `outputs` by name (paths, numbers) and a markdown `message`.

    `ok` is False when the request failed (then every output is None) or, with `warning`, when it
    partly failed (e.g. an S3 codec encodes but cannot decode).
    """

    message: str
    ok: bool = True
    warning: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        """The output called `name`, or None."""
        return self.outputs.get(name)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _pick(value: str | None, names: dict[str, str], what: str) -> str:
    """Accept a key (`zero_shot`) or its label (`zero-shot`) -> the key; else BadConfigError."""
    for key, label in names.items():
        if value in (key, label):
            return key
    raise BadConfigError(f"unknown {what} '{value}' (choose from {', '.join(names)})")


class DemoBackend:
    """The demo's models (found in `exp_dir`, loaded on first use, cached) and its three tasks.

    Outputs are written to `work_dir` (a fresh temp folder by default; `close()` removes it).
    Models load onto `device` (cpu, cuda, cuda:N, auto) and run in `dtype` (float32, or bfloat16 /
    float16 autocast); an absent device is a BadConfigError here, before any model loads.
    """

    def __init__(self, exp_dir: str | Path, limits: DemoLimits | None = None, work_dir: str | Path | None = None,
                 device: str = "cpu", dtype: str = "float32"):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.exp_dir = Path(exp_dir)
        self.limits = limits or DemoLimits()
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="voxtok-demo-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._cache: dict[tuple[str, str], tuple[int, Any]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Remove the output folder."""
        import shutil

        shutil.rmtree(self.work_dir, ignore_errors=True)

    def warm_up(self) -> None:
        """Import the model code and load the models present now, so the first request is quick.

        Meant for a background thread at start-up; problems are logged (requests report them).
        """
        t0 = time.perf_counter()
        try:
            from voxtok.registry import KINDS, registered

            for kind in KINDS:  # imports every model class
                registered(kind)
            from voxtok.tts.speaker import SpeakerEncoder

            SpeakerEncoder(str(self.device))
            for model in self.tts_manifests():
                self.pipeline(model)
            for name in self.codec_dirs():
                self.codec(name)
        except Exception:  # a broken model must not stop the server; its requests will say what is wrong
            log.exception("warm-up stopped early")
        log.info("warm-up done in %.1f s", time.perf_counter() - t0)

    # ------------------------------------------------------------------ what the exp dir holds
    def tts_manifests(self) -> dict[str, Path]:
        """Trained TTS models: pipeline name (cosyvoice / flowomni) -> manifest path."""
        found = {m: self.exp_dir / "tts" / f"{m}.yaml" for m in tts_models()}
        return {m: p for m, p in found.items() if p.is_file()}

    def codec_dirs(self) -> dict[str, Path]:
        """Codec checkpoints: folder name (codec_wavtokenizer, s3, ...) -> model dir."""
        dirs = sorted(self.exp_dir.glob("codec_*/model/metadata.json")) + sorted(self.exp_dir.glob("s3/model/metadata.json"))
        return {p.parent.parent.name: p.parent for p in dirs}

    def codec_info(self, name: str) -> dict[str, Any]:
        """A codec's facts (codec, checkpoint_hash, n_q, rates) from its metadata, without loading weights."""
        from voxtok.registry import read_metadata

        dirs = self.codec_dirs()
        if name not in dirs:
            raise BadConfigError(self._no_codec_message(name))
        try:
            meta = read_metadata(dirs[name])
        except OSError as exc:
            raise BadConfigError(f"unreadable codec metadata ({exc})", dirs[name] / "metadata.json") from None
        return {"codec": meta["name"], "checkpoint_hash": meta["weights_hash"], **meta["info"]}

    def codec_choices(self) -> list[tuple[str, str]]:
        """(label, folder name) per codec, e.g. ("wavtokenizer (codec_wavtokenizer): 1 x 4096 codes, 75 Hz",
        "codec_wavtokenizer")."""
        out = []
        for name in self.codec_dirs():
            try:
                info = self.codec_info(name)
            except VoxTokError:  # listed anyway: choosing it reports the problem
                info = {}
            label = (f"{info.get('codec', name)} ({name}): {info.get('n_q', '?')} x {info.get('codebook_size', '?')} "
                     f"codes, {float(info.get('frame_rate', 0)):g} Hz")
            out.append((label, name))
        return out

    def stored_voices(self, model: str) -> list[str]:
        """Speaker ids usable in `stored speaker` mode with `model` ([] when it has none)."""
        manifest = self.tts_manifests().get(_pick(model, tts_models(), "model"))
        if manifest is None:
            return []
        try:
            return SpeakerTable(read_manifest(manifest).get("speakers")).ids()
        except (VoxTokError, OSError):
            return []

    def overview(self) -> str:
        """Markdown: which models the exp dir holds now."""
        tts = self.tts_manifests()
        tts_text = ", ".join(f"{label} {'ready' if m in tts else '(not trained yet)'}" for m, label in tts_models().items())
        codecs = ", ".join(f"`{n}`" for n in self.codec_dirs()) or "none yet"
        report = "found" if self._report_markdown_file() or self._report_plots() else "none yet"
        return f"Models from `{self.exp_dir}` — TTS: {tts_text} · codecs: {codecs} · benchmark report: {report}"

    # ------------------------------------------------------------------ loading (cached per file version)
    def _cached(self, kind: str, path: Path, stamp_file: Path, load: Callable[[], Any]) -> Any:
        key = (kind, str(path))
        stamp = _mtime(stamp_file)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            obj = load()
            self._cache[key] = (stamp, obj)
            return obj

    def pipeline(self, model: str):
        """The loaded TTS pipeline for `model` (cosyvoice / flowomni), or BadConfigError if not trained."""
        from voxtok.registry import load

        models = tts_models()
        model = _pick(model, models, "model")
        manifest = self.tts_manifests().get(model)
        if manifest is None:
            raise BadConfigError(f"no {models[model]} model in {self.exp_dir} yet (tts/{model}.yaml is written "
                                 "when the recipe's TTS stages finish: ./run.sh --stage 7 --stop_stage 11, or by "
                                 "`voxtok convert cosyvoice` for a released CosyVoice-300M)")
        pipe = self._cached("tts", manifest, manifest,
                            lambda: load(manifest, self.device, kind="pipeline").to(self.device, self.dtype))
        if pipe.registry_name != model:
            raise BadConfigError(f"manifest holds a {pipe.registry_name} pipeline, not {model}", manifest)
        return pipe

    def codec(self, name: str):
        """The loaded codec stored in folder `name` (codec_<x> or s3)."""
        from voxtok.registry import load

        dirs = self.codec_dirs()
        if name not in dirs:
            raise BadConfigError(self._no_codec_message(name))
        return self._cached("codec", dirs[name], dirs[name] / "model.safetensors",
                            lambda: load(dirs[name], self.device, kind="codec"))

    def _no_codec_message(self, name: str | None) -> str:
        found = list(self.codec_dirs())
        if not found:
            return (f"no codec checkpoints in {self.exp_dir} yet (codec_<name>/model or s3/model): train one with "
                    "the recipe (./run.sh --stage 2 --stop_stage 3)")
        return f"no codec '{name}' in {self.exp_dir} (found: {', '.join(found)})"

    # ------------------------------------------------------------------ the error boundary
    def _attempt(self, work: Callable[[], Outcome], uploads: tuple[str | None, ...] = ()) -> Outcome:
        try:
            return work()
        except VoxTokError as exc:
            return Outcome(_shorten_paths(str(exc), uploads), ok=False)
        except Exception as exc:  # the UI boundary: never show a traceback, keep it in the server log
            log.exception("demo request failed")
            first = " ".join(str(exc).split())[:200]
            return Outcome(f"internal error ({type(exc).__name__}: {first}); the server log has the details", ok=False)

    def _out_path(self, stem: str, suffix: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:60] or "audio"
        folder = self.work_dir / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{safe}{suffix}"

    # ------------------------------------------------------------------ voice cloning
    def clone(self, text: str | None, reference: str | None, reference_text: str | None, model: str, mode: str,
              speaker: str | None = None, n_steps: float | None = 10, cfg_strength: float | None = 0.7,
              seed: float | None = 0, streaming: bool = False) -> Outcome:
        """Speak `text` in the reference voice (a file path) or a stored one -> outputs {"audio": wav path}.

        model: a registered pipeline (cosyvoice | flowomni, or its label); mode: zero_shot | cross_lingual | sft
        (or label). cfg_strength is ignored (with a note) by pipelines without CFG and by models without
        it (a Flow-Omni trained without condition dropout); streaming, for
        pipelines that stream, reports the first-chunk latency.
        """
        return self._attempt(lambda: self._clone(text, reference, reference_text, model, mode, speaker, n_steps,
                                                 cfg_strength, seed, streaming), (reference,))

    def _clone(self, text, reference, reference_text, model, mode, speaker, n_steps, cfg_strength, seed,
               streaming) -> Outcome:
        from voxtok.audio import load_audio, save_audio

        model = _pick(model, tts_models(), "model")
        capabilities = pipeline_class(model)
        mode = _pick(mode, MODE_LABELS, "mode")
        text = (text or "").strip()
        if not text:
            raise BadTextError("type the text to speak")
        if len(text) > self.limits.max_text_chars:
            raise BadTextError(f"text is too long ({len(text)} characters > {self.limits.max_text_chars}); "
                               "shorten it or split it into sentences")
        steps, seed = _whole_number(n_steps, "sampling steps", 1, 200), _whole_number(seed, "seed", 0, 2**31 - 1)
        reference_text = (reference_text or "").strip() or None
        notes = []
        if cfg_strength is not None and not capabilities.cfg:  # the UI's slider always sends a value
            notes.append(f"CFG strength does not apply to {capabilities.label} (it has no classifier-free guidance).")
            cfg_strength = None
        capabilities.check_options(mode, streaming=bool(streaming), cfg_strength=cfg_strength)
        if cfg_strength is not None:
            cfg_strength = float(cfg_strength)
            if not 0.0 <= cfg_strength <= 10.0:
                raise BadConfigError(f"CFG strength must be in [0, 10], got {cfg_strength}")
        if mode == "sft":
            if not speaker:
                raise BadConfigError("stored speaker mode needs a voice from the stored-voice list")
        elif not reference:
            raise BadAudioError(f"{MODE_LABELS[mode]} mode needs reference audio: upload or record "
                                f"{capabilities.min_prompt_seconds:g}-{self._max_reference_seconds(capabilities):g} s "
                                "of speech")
        elif mode == "zero_shot" and not reference_text:
            raise BadConfigError("zero-shot mode needs the reference transcript; without one, choose cross-lingual")

        pipe = self.pipeline(model)
        if cfg_strength is not None and not pipe.cfg:  # per checkpoint (Flow-Omni: trained with condition dropout)
            notes.append(f"CFG strength does not apply to this {capabilities.label} model (trained without "
                         "condition dropout, it has no classifier-free guidance).")
            cfg_strength = None
        prompt = None
        if mode != "sft":
            wav, sr = load_audio(reference, None, min_seconds=capabilities.min_prompt_seconds,
                                 max_seconds=self._max_reference_seconds(capabilities))
            prompt = pipe.prepare_prompt(wav, sr, reference_text, name=Path(reference).name)
        kw = dict(n_steps=steps, cfg_strength=cfg_strength, seed=seed)
        t0 = time.perf_counter()
        if streaming:
            audio, first = timed_stream(pipe.stream(text, prompt, mode, speaker if mode == "sft" else None, **kw))
            notes.insert(0, f"Streaming: first audio chunk after {first * 1000:.0f} ms.")
        else:
            audio = pipe.synthesize(text, prompt, mode, speaker if mode == "sft" else None, **kw)
        seconds = time.perf_counter() - t0
        out = save_audio(self._out_path(f"{model}_{mode}", ".wav"), audio, pipe.sample_rate)
        duration = audio.shape[-1] / pipe.sample_rate
        who = f"voice `{speaker}`" if mode == "sft" else "the reference voice"
        message = (f"{duration:.2f} s of speech in {who} from {capabilities.label} ({MODE_LABELS[mode]}, "
                   f"{steps} steps, seed {seed}) in {seconds:.2f} s "
                   f"(real-time factor {seconds / max(duration, 1e-9):.2f}).")
        return Outcome(" ".join([message] + notes), outputs={"audio": str(out)})

    def _max_reference_seconds(self, capabilities: type[TTSPipeline]) -> float:
        return min(self.limits.max_reference_seconds, capabilities.max_prompt_seconds)

    # ------------------------------------------------------------------ codec lab
    def codec_roundtrip(self, audio: str | None, codec: str | None, n_q: float | None = None) -> Outcome:
        """Encode an audio file with `codec` (folder name) keeping `n_q` codebooks, then decode it.

        outputs: audio (reconstruction .wav), tokens (.vtk), picture (.png of both spectrograms),
        n_tokens (Q x frames), kbps. A codec without a decoder (S3) still gives tokens, with a warning.
        """
        return self._attempt(lambda: self._codec_roundtrip(audio, codec, n_q), (audio,))

    def _codec_roundtrip(self, audio, name, n_q) -> Outcome:
        from voxtok.audio import load_audio, save_audio

        if not audio:
            raise BadAudioError("upload an audio file (wav, flac, ogg or mp3)")
        name = name or self._only_codec_name()
        codec = self.codec(name)
        n_q = codec.n_q if n_q in (None, "") else _whole_number(n_q, "number of quantizers", 1, 1024)
        if n_q > codec.n_q:
            raise BadConfigError(f"{name} has {codec.n_q} quantizer(s); asked for {n_q}")
        wav, sr = load_audio(audio, codec.sample_rate, max_seconds=self.limits.max_audio_seconds)
        num_samples = wav.shape[-1]
        with torch.inference_mode(), precision(self.device, self.dtype):
            codes = codec.encode(wav[None].to(self.device), n_q=n_q).cpu()
        stem = Path(audio).stem
        tokens = codec.save_tokens(self._out_path(f"{stem}.{name}.q{n_q}", ".vtk"), codes[0], num_samples)
        q, frames = codes.shape[1], codes.shape[2]
        kbps = codec.bitrate_at(n_q) / 1000
        message = (f"{q} codebook(s) x {frames} frames = **{q * frames} tokens** for {num_samples / sr:.2f} s "
                   f"({codec.frame_rate:g} frames/s) = **{kbps:.3g} kbit/s**.")
        recon, warning = None, False
        try:
            with torch.inference_mode(), precision(self.device, self.dtype):
                recon = codec.decode(codes.to(self.device), num_samples)[0].cpu()
        except VoxTokError as exc:  # S3 tokens have no audio decoder: keep the tokens, say why there is no audio
            message += f" No reconstruction: {exc}"
            warning = True
        out = {"tokens": str(tokens), "n_tokens": int(q * frames), "kbps": round(kbps, 4)}
        if recon is not None:
            out["audio"] = str(save_audio(self._out_path(f"{stem}.{name}.q{n_q}", ".wav"), recon, sr))
        out["picture"] = str(spectrogram_picture(wav, recon, sr, self._out_path(f"{stem}_spectrograms", ".png"),
                                                 f"{name}, {n_q} quantizer(s), {kbps:.3g} kbit/s"))
        return Outcome(message, warning=warning, outputs=out)

    def _only_codec_name(self) -> str:
        dirs = self.codec_dirs()
        if len(dirs) != 1:
            raise BadConfigError(self._no_codec_message(None) if not dirs else "choose a codec")
        return next(iter(dirs))

    def decode_tokens(self, token_file: str | None) -> Outcome:
        """Decode a `.vtk` file with the codec checkpoint that made it (found by its hash) -> {"audio"}."""
        return self._attempt(lambda: self._decode_tokens(token_file), (token_file,))

    def _decode_tokens(self, token_file) -> Outcome:
        from voxtok.audio import save_audio
        from voxtok.codecs.tokenfile import read_tokens

        if not token_file:
            raise BadTokenFileError("upload a .vtk token file (made by the codec lab or `voxtok codec encode`)")
        if Path(token_file).suffix.lower() != ".vtk":
            raise BadTokenFileError("not a .vtk token file", Path(token_file).name)
        _, header = read_tokens(token_file)
        matches = [n for n in self.codec_dirs() if (info := self.codec_info(n)).get("codec") == header.codec
                   and info.get("checkpoint_hash") == header.checkpoint_hash]
        if not matches:
            raise BadTokenFileError(f"tokens were made by {header.codec} checkpoint {header.checkpoint_hash}, which "
                                    f"is not in {self.exp_dir} (found: {', '.join(self.codec_dirs()) or 'no codecs'})")
        codec = self.codec(matches[0])
        codes, header = codec.load_tokens(token_file)
        with torch.inference_mode(), precision(self.device, self.dtype):
            wav = codec.decode(codes[None].to(self.device), header.num_samples)[0].cpu()
        out = save_audio(self._out_path(Path(token_file).stem, ".wav"), wav, codec.sample_rate)
        return Outcome(f"Decoded {header.n_q} x {header.num_frames} tokens with `{matches[0]}`: "
                       f"{header.num_samples / codec.sample_rate:.2f} s at {codec.sample_rate} Hz.",
                       outputs={"audio": str(out)})

    # ------------------------------------------------------------------ benchmark
    def _report_markdown_file(self) -> Path | None:
        for rel in ("report/report.md", "bench/report.md", "bench/table.md"):
            if (self.exp_dir / rel).is_file():
                return self.exp_dir / rel
        return None

    def _report_plots(self) -> list[Path]:
        plots: dict[str, Path] = {}
        for folder in ("report", "bench"):  # the bench copies win: they are the originals
            plots.update({p.name: p for p in sorted((self.exp_dir / folder).glob("*.png"))})
        return list(plots.values())

    def benchmark(self) -> Outcome:
        """The latest report: outputs {"markdown": its tables, "plots": [png paths]}."""
        return self._attempt(self._benchmark)

    def _benchmark(self) -> Outcome:
        md_file, plots = self._report_markdown_file(), self._report_plots()
        if md_file is None and not plots:
            msg = (f"No benchmark report in {self.exp_dir} yet: run the recipe's benchmark and report stages "
                   "(./run.sh --stage 13 --stop_stage 14).")
            return Outcome(msg, ok=False, outputs={"markdown": msg, "plots": []})
        text = md_file.read_text() if md_file else ""
        # Image links are relative to the report's folder; the plots are shown in the gallery instead.
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("!["))
        source = md_file.relative_to(self.exp_dir) if md_file else "plots only"
        return Outcome(f"Report: `{source}`, {len(plots)} plot(s).",
                       outputs={"markdown": text, "plots": [str(p) for p in plots]})


def _whole_number(value, what: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadConfigError(f"{what} must be a whole number, got {value!r}") from None
    if number != int(number) or not low <= number <= high:
        raise BadConfigError(f"{what} must be a whole number in {low}..{high}, got {value!r}")
    return int(number)


def _shorten_paths(message: str, uploads: tuple[str | None, ...]) -> str:
    """Uploads live in long temp paths; users know them by file name."""
    for path in uploads:
        if path:
            message = message.replace(str(path), Path(path).name)
    return message


def spectrogram_picture(original: torch.Tensor, reconstructed: torch.Tensor | None, sample_rate: int,
                        path: str | Path, title: str) -> Path:
    """PNG of the log-mel spectrograms of original [1, T] (and reconstructed [1, T]) audio, one above
    the other on the same colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from voxtok.audio import MelConfig, MelSpectrogram

    mel = MelSpectrogram(MelConfig(sample_rate=sample_rate, n_fft=1024, hop_length=256, n_mels=80))
    panels = [("original", original)] + ([("reconstructed", reconstructed)] if reconstructed is not None else [])
    with torch.no_grad():
        specs = [(name, mel(w[None].float())[0].numpy()) for name, w in panels]
    low = min(s.min() for _, s in specs)
    high = max(s.max() for _, s in specs)
    fig, axes = plt.subplots(len(specs), 1, figsize=(8, 2.4 * len(specs)), squeeze=False, sharex=True)
    seconds = original.shape[-1] / sample_rate
    for ax, (name, spec) in zip(axes[:, 0], specs):
        ax.imshow(spec, origin="lower", aspect="auto", vmin=max(low, high - 12.0), vmax=high,
                  extent=(0, seconds, 0, spec.shape[0]), cmap="magma")
        ax.set_ylabel("mel bin")
        ax.set_title(name, fontsize=10, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
