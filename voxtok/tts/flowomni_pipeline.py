"""Flow-Omni synthesis: text (+ prompt mel) -> continuous mel frames (LLM + flow head) -> vocoder.

Modes mirror the CosyVoice pipeline:
  zero_shot      the prompt's transcript and mel frames prefix the sequence, plus its speaker embedding;
  cross_lingual  no transcript: only the prompt's speaker embedding conditions the model;
  sft            a stored speaker's embedding.

Streaming (`stream`): the LM's frames are final as soon as they are generated, so chunks of them go
to the vocoder while decoding goes on, by CosyVoice's rule (`CosyVoicePipeline.stream`): chunk
[a, b) is vocoded once the look-ahead frames after b exist (or decoding ended), the audio of the
look-ahead is held back and cross-faded into the next chunk (`StreamingVocoder`). Flow-Omni's speech
tokens are continuous: chunk sizes are counted in mel frames.

Classifier-free guidance needs a model trained with condition dropout (`cfm.cond_dropout > 0`), so
the capability is per instance: the class says Flow-Omni pipelines can guide (`cfg`, what
`check_options` and the demo's controls read), each instance's `cfg` says whether its model can.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from voxtok.errors import BadConfigError
from voxtok.nn.sampling import item_seeds
from voxtok.registry import register
from voxtok.tts.pipeline import (Prompt, SpeakerTable, StreamingVocoder, TTSPipeline, check_mode_inputs, is_vocoder,
                                  load_vocoder)


@register("pipeline", "flowomni")
class FlowOmniPipeline(TTSPipeline):
    """model: FlowOmniTTS; vocoder: a mel vocoder on the same mel front end (MelVocoder or HiFT);
    frontend: TextFrontend.

    It streams (`stream`), and guides (`cfg_strength`) when its model was trained with condition
    dropout: `self.cfg` is the model's `supports_cfg`.
    """

    label = "Flow-Omni"
    streaming = True
    cfg = True  # per instance: __init__ sets it from the model
    required_parts = ("flowomni", "vocoder")

    def __init__(self, model, vocoder, frontend, speakers: SpeakerTable | None = None):
        self.model, self.vocoder, self.frontend = model.eval(), vocoder.eval(), frontend
        self.speakers = speakers or SpeakerTable(None)
        self.sample_rate = int(vocoder.sample_rate)
        self.mel_config = model.mel_config
        self.cfg = bool(model.supports_cfg)
        if not self.cfg:  # what check_options says when a CFG strength is given anyway
            self.cfg_refusal = ("this Flow-Omni model was trained without condition dropout (cfm.cond_dropout 0), "
                                "so it has no classifier-free guidance: leave the CFG strength unset")
        if not is_vocoder(vocoder):
            raise BadConfigError(f"{type(vocoder).__name__} is not a vocoder (mel in, audio out)")
        if vocoder.mel_config != model.mel_config:
            raise BadConfigError("Flow-Omni and the vocoder were trained on different mel settings")

    @classmethod
    def from_manifest(cls, spec: dict, map_location: str | torch.device = "cpu") -> "FlowOmniPipeline":
        """Load the parts a read manifest names (`flowomni`, `vocoder`, optional `speakers`)."""
        from voxtok.registry import load
        from voxtok.tts.frontend import TextFrontend

        cls.check_manifest(spec)
        model = load(spec["flowomni"], map_location, kind="tts")
        if "frontend" not in model.extra:
            raise BadConfigError("Flow-Omni checkpoint lacks its text frontend settings", spec["flowomni"])
        return cls(model, load_vocoder(spec["vocoder"], map_location),
                   TextFrontend.from_dict(model.extra["frontend"]), SpeakerTable(spec.get("speakers")))

    def _inputs(self, text: str, prompt: Prompt | None, mode: str, speaker: str | None) -> tuple:
        """(text ids [L], speaker embedding [1, spk_dim], prompt kwargs of FlowOmniTTS.synthesize), on the
        model's device."""
        check_mode_inputs(mode, prompt, speaker)
        device = self.model.device
        ids = torch.tensor(self.frontend.encode(text), dtype=torch.long, device=device)
        spk = (self.speakers.embedding(speaker) if mode == "sft" else prompt.spk_emb).to(device)
        kw = {}
        if mode == "zero_shot":
            kw = dict(prompt_text_ids=torch.tensor(self.frontend.encode(prompt.text), dtype=torch.long, device=device),
                      prompt_mel=prompt.mel.to(device))
        return ids, spk[None], kw

    @torch.inference_mode()
    def synthesize_batch(self, texts: Sequence[str], prompts: Sequence[Prompt | None], mode: str = "zero_shot",
                         speakers: Sequence[str | None] | None = None, n_steps: int | None = None,
                         cfg_strength: float | None = None, seed: int = 0, temperature: float | None = None,
                         **_unused) -> list[torch.Tensor]:
        """Texts (one prompt/speaker each) -> audio [1, T_i] (float32, CPU); item i uses seed + i (batch == single).

        cfg_strength: classifier-free guidance w (0 = off; None: the model's inference.cfg_strength),
        only for a model trained with condition dropout (`cfg`).
        """
        self.check_options(mode, cfg_strength=cfg_strength)
        speakers = list(speakers) if speakers is not None else [None] * len(texts)
        seeds = item_seeds(seed, len(texts))
        out = []
        with self.precision():
            for i, (text, prompt, speaker) in enumerate(zip(texts, prompts, speakers)):
                ids, spk, kw = self._inputs(text, prompt, mode, speaker)
                mel, lengths = self.model.synthesize(ids, spk_emb=spk, n_steps=n_steps, temperature=temperature,
                                                     seed=seeds[i], cfg_strength=cfg_strength, **kw)
                audio = self.vocoder(mel[:, :, : int(lengths[0])])[0]
                out.append(audio.float().cpu().clamp(-1, 1))
        return out

    def stream(self, text: str, prompt: Prompt | None = None, mode: str = "zero_shot", speaker: str | None = None,
               n_steps: int | None = None, cfg_strength: float | None = None, seed: int = 0,
               temperature: float | None = None, chunk_tokens: int | None = None,
               first_chunk_tokens: int | None = None, overlap_tokens: int | None = None) -> Iterator[torch.Tensor]:
        """Yield audio chunks [T_k] (float32, CPU) while the model is still generating frames.

        Sizes in mel frames (Flow-Omni's continuous speech tokens), rounded up to whole steps of r
        frames: `chunk_tokens` per chunk (default: the model's streaming.chunk_frames), a smaller
        `first_chunk_tokens` lowers the latency to the first chunk, `overlap_tokens` frames of
        look-ahead (default streaming.overlap_frames) let the vocoder finish a chunk's last frames;
        their audio is cross-faded into the next chunk. With the same seed the frames are
        `synthesize`'s and the chunks concatenate to its length (frames x hop samples). Options as in
        `synthesize_batch`; a bad option is an error here, before the first chunk.
        """
        self.check_options(mode, streaming=True, cfg_strength=cfg_strength)
        ids, spk, kw = self._inputs(text, prompt, mode, speaker)
        r = self.model.r
        size = self.model.chunk_steps(chunk_tokens, "chunk_tokens") * r
        first = self.model.chunk_steps(first_chunk_tokens or size, "first_chunk_tokens") * r
        overlap = self.model.config["streaming"]["overlap_frames"] if overlap_tokens is None else overlap_tokens
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
            raise BadConfigError(f"overlap_tokens must be a whole number of mel frames >= 0, got {overlap!r}")
        overlap = -(-overlap // r) * r
        # Checked now (not at the first chunk) so that a bad strength fails before any audio is promised.
        self.model.check_cfg_strength(cfg_strength)
        frames = self.model.stream_frames(ids, spk_emb=spk, n_steps=n_steps, temperature=temperature, seed=seed,
                                          cfg_strength=cfg_strength, chunk_frames=size,
                                          first_chunk_frames=first + overlap, **kw)
        return self.precise_steps(self._vocode_chunks(frames, size, first, overlap))

    @torch.inference_mode()
    def _vocode_chunks(self, frames: Iterator[torch.Tensor], size: int, first: int,
                       overlap: int) -> Iterator[torch.Tensor]:
        """Log-mel pieces [n_mels, F_k] as generated -> audio chunks [keep_k * hop] (CosyVoice's rule, see `stream`)."""
        voc = StreamingVocoder(self.vocoder)
        mel = None
        start, end = 0, first  # the next chunk to vocode: frames [start, end)
        for piece in frames:
            mel = piece if mel is None else torch.cat([mel, piece], dim=-1)
            while mel.shape[-1] >= end + overlap:
                yield voc.push(mel[:, start:end + overlap], end - start).cpu()
                start, end = end, end + size
        total = 0 if mel is None else mel.shape[-1]
        while start < total:  # decoding ended: the rest, with what look-ahead there is
            end = min(end, total)
            yield voc.push(mel[:, start:min(end + overlap, total)], end - start).cpu()
            start, end = end, end + size
