"""TTS speed on CPU per stage, 1 and 2 threads: LLM decoding, one flow-matching step, the vocoder,
and the first-chunk latency of streaming synthesis; then Flow-Omni's decoding and streaming latency.

    python benchmarks/speed/tts_speed.py [--sizes tiny paper] [--threads 1 2] [--seconds 10]
                                         [--pipelines cosyvoice flowomni]

Models are built from configs/tts/*_{tiny,300m_paper}.yaml with random weights (speed does not
depend on weight values). RTF = processing time / duration of the audio it stands for:
- LLM: seconds per generated token x token rate (50 tokens/s), KV cache on; the text's minimum
  length keeps EOS out of the first `--tokens` tokens, so every run decodes the same number;
- flow: one ODE step (estimator with classifier-free guidance, i.e. a batch of 2) on `--seconds`
  of mel; a full synthesis costs n_steps of these plus the encoder;
- vocoder: mel -> waveform for `--seconds` of audio;
- first chunk: text -> LLM (first 15 tokens) -> flow (10 steps) -> vocoder, the latency a streaming
  listener waits (tiny models only: the paper LLM on CPU is the bottleneck shown in its own row).
Flow-Omni (configs/tts/flowomni_{tiny,paper}.yaml, the tiny / paper vocoder), second table:
- ms per step: one KV-cached LM step plus the flow head's ODE (the config's 10 steps), r frames;
  RTF = that time / the r frames' duration;
- first chunk: `FlowOmniPipeline.stream` until its first audio chunk, with a first chunk of 0.3 s of
  frames (what the CosyVoice row's 15 tokens stand for; rounded up to whole steps), without
  look-ahead as in the CosyVoice row, and with the default look-ahead (streaming.overlap_frames),
  which is what `voxtok tts synth --stream --first-chunk-tokens 26` waits for.
Best of `--repeats` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

from codec_speed import best_time  # benchmarks/speed/ is on sys.path when a script here runs
from voxtok.recipes import CONFIG_DIR
from voxtok.tts.flow import FlowDecoder
from voxtok.tts.flowomni import FlowOmniTTS
from voxtok.tts.flowomni_pipeline import FlowOmniPipeline
from voxtok.tts.frontend import TextFrontend
from voxtok.tts.llm import SamplingConfig, TextToTokenLM
from voxtok.tts.pipeline import Prompt
from voxtok.tts.vocoder import MelVocoder

CONFIGS = CONFIG_DIR / "tts"
NAMES = {"tiny": ("llm_tiny", "flow_tiny", "vocoder_tiny"),
         "paper": ("llm_300m_paper", "flow_300m_paper", "vocoder_paper")}
FLOWOMNI = {"tiny": "flowomni_tiny", "paper": "flowomni_paper"}
TOKEN_RATE = 50.0
FIRST_CHUNK_SECONDS = 15 / TOKEN_RATE  # the CosyVoice row's first chunk
STEP_FRAMES = 40  # frames generated per ms-per-step run
SPEECH_VOCAB = 4096
TEXT = "The quick brown fox jumps over the lazy dog near the quiet river bank today."


def model_cfg(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]


def build(size: str):
    frontend = TextFrontend("char")
    llm_name, flow_name, voc_name = NAMES[size]
    llm = TextToTokenLM.from_config(model_cfg(llm_name) | {"text_vocab_size": frontend.vocab_size,
                                                           "speech_vocab_size": SPEECH_VOCAB}).eval()
    flow = FlowDecoder(model_cfg(flow_name) | {"vocab_size": SPEECH_VOCAB, "token_rate": TOKEN_RATE}).eval()
    vocoder = MelVocoder(model_cfg(voc_name)).eval()
    return frontend, llm, flow, vocoder


@torch.inference_mode()
def measure(size: str, threads: int, seconds: float, repeats: int, tokens: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    frontend, llm, flow, vocoder = build(size)
    text = torch.tensor(frontend.encode(TEXT))
    spk = torch.randn(1, 256)

    def decode():
        steps = 0
        for step in llm.decode_steps(text, spk, sampling=SamplingConfig.greedy(), seed=0, max_tokens=tokens):
            steps += 1
        return steps

    n = decode()
    per_token = best_time(decode, repeats) / max(n, 1)
    n_tok = int(seconds * TOKEN_RATE)
    toks = torch.randint(0, SPEECH_VOCAB, (1, n_tok))
    one = best_time(lambda: flow.synthesize(toks, None, spk, n_steps=1, seed=0), repeats)
    three = best_time(lambda: flow.synthesize(toks, None, spk, n_steps=3, seed=0), repeats)
    frames = int(flow.frames_for_tokens(n_tok))
    mel = torch.randn(1, vocoder.n_mels, frames)
    voc = best_time(lambda: vocoder(mel), repeats)
    audio_seconds = frames * vocoder.hop_length / vocoder.sample_rate
    row = {"llm_rtf": per_token * TOKEN_RATE, "llm_ms_per_token": per_token * 1000,
           "flow_step_rtf": (three - one) / 2 / audio_seconds, "flow_encoder_rtf": max(one - (three - one) / 2, 0) / audio_seconds,
           "vocoder_rtf": voc / audio_seconds}
    if size == "tiny":
        def first_chunk():
            t0 = time.perf_counter()
            chunk = []
            for step in llm.decode_steps(text, spk, sampling=SamplingConfig.greedy(), seed=0, max_tokens=15):
                chunk.append(int(step.token[0]))
            c = torch.tensor(chunk)[None] % SPEECH_VOCAB
            m, lengths = flow.synthesize_chunk(c, None, spk, 0, c.shape[1], n_steps=10, overlap_tokens=0, seed=0)
            vocoder(m[:, :, : int(lengths[0])])
            return time.perf_counter() - t0

        first_chunk()
        row["first_chunk_ms"] = min(first_chunk() for _ in range(repeats)) * 1000
    return row


def build_flowomni(size: str) -> FlowOmniPipeline:
    """Flow-Omni (random weights, char frontend as the recipe sets text_vocab_size) + the size's vocoder."""
    frontend = TextFrontend("char")
    cfg = model_cfg(FLOWOMNI[size]) | {"text_vocab_size": frontend.vocab_size}
    # Random weights: a pretrained backbone (init_from) would not change the speed.
    cfg["backbone"] = {k: v for k, v in cfg["backbone"].items() if k != "init_from"}
    model = FlowOmniTTS.from_config(cfg).eval()
    return FlowOmniPipeline(model, MelVocoder(model_cfg(NAMES[size][2])).eval(), frontend)


@torch.inference_mode()
def measure_flowomni(size: str, threads: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    pipe = build_flowomni(size)
    model = pipe.model
    text = torch.tensor(pipe.frontend.encode(TEXT))
    spk = torch.randn(1, 256)
    # The text's minimum length (min_frame_text_ratio x 77 characters) is above STEP_FRAMES: no early stop.
    steps = STEP_FRAMES // model.r
    per_step = best_time(lambda: model.synthesize(text, spk_emb=spk, max_frames=steps * model.r, seed=0),
                         repeats) / steps
    frame_seconds = pipe.vocoder.hop_length / pipe.sample_rate
    first_frames = round(FIRST_CHUNK_SECONDS / frame_seconds)
    prompt = Prompt(wav=torch.zeros(1, 16000), sample_rate=16000, spk_emb=spk[0])

    def first_chunk(overlap: int | None) -> float:
        t0 = time.perf_counter()
        chunks = pipe.stream(TEXT, prompt, "cross_lingual", seed=0, first_chunk_tokens=first_frames,
                             overlap_tokens=overlap)
        next(chunks)
        seconds = time.perf_counter() - t0
        chunks.close()
        return seconds

    row = {"ms_per_step": per_step * 1000, "rtf": per_step / (model.r * frame_seconds),
           "first_frames": -(-first_frames // model.r) * model.r,
           "overlap": model.config["streaming"]["overlap_frames"]}
    for key, overlap in (("first_ms", 0), ("first_lookahead_ms", None)):
        first_chunk(overlap)
        row[key] = min(first_chunk(overlap) for _ in range(repeats)) * 1000
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "paper"], choices=list(NAMES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length for flow and vocoder")
    parser.add_argument("--tokens", type=int, default=40, help="tokens decoded per LLM run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pipelines", nargs="+", default=["cosyvoice", "flowomni"], choices=["cosyvoice", "flowomni"])
    args = parser.parse_args()
    if "cosyvoice" in args.pipelines:
        cosyvoice_table(args)
    if "flowomni" in args.pipelines:
        flowomni_table(args)


def flowomni_table(args: argparse.Namespace) -> None:
    print("\n| Flow-Omni | threads | ms per step | RTF | first chunk (ms) | first chunk + look-ahead (ms) |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        for threads in args.threads:
            r = measure_flowomni(size, threads, args.repeats)
            print(f"| {size} | {threads} | {r['ms_per_step']:.1f} | {r['rtf']:.3f} | {r['first_ms']:.0f} "
                  f"({r['first_frames']} frames) | {r['first_lookahead_ms']:.0f} (+{r['overlap']}) |", flush=True)


def cosyvoice_table(args: argparse.Namespace) -> None:
    print("| models | threads | LLM ms/token | LLM RTF | flow RTF per step | flow encoder RTF | vocoder RTF "
          "| first chunk (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for threads in args.threads:
            r = measure(size, threads, args.seconds, args.repeats, args.tokens)
            first = f"{r['first_chunk_ms']:.0f}" if "first_chunk_ms" in r else "-"
            print(f"| {size} | {threads} | {r['llm_ms_per_token']:.1f} | {r['llm_rtf']:.3f} | {r['flow_step_rtf']:.4f} "
                  f"| {r['flow_encoder_rtf']:.4f} | {r['vocoder_rtf']:.4f} | {first} |", flush=True)


if __name__ == "__main__":
    main()
