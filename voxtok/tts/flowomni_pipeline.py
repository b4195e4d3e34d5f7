"""Flow-Omni synthesis: text (+ prompt mel) -> continuous mel frames (LLM + flow head) -> vocoder.

Modes mirror the CosyVoice pipeline:
  zero_shot      the prompt's transcript and mel frames prefix the sequence, plus its speaker embedding;
  cross_lingual  no transcript: only the prompt's speaker embedding conditions the model;
  sft            a stored speaker's embedding.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from voxtok.errors import BadConfigError
from voxtok.tts.pipeline import Prompt, SpeakerTable, TTSPipeline, pick_mode, read_manifest


class FlowOmniPipeline(TTSPipeline):
    """model: FlowOmniTTS; vocoder: MelVocoder (same mel front end); frontend: TextFrontend."""

    model_name = "flowomni"

    def __init__(self, model, vocoder, frontend, speakers: SpeakerTable | None = None):
        self.model, self.vocoder, self.frontend = model.eval(), vocoder.eval(), frontend
        self.speakers = speakers or SpeakerTable(None)
        self.sample_rate = int(vocoder.sample_rate)
        self.mel_config = model.mel_config
        if vocoder.mel_config != model.mel_config:
            raise BadConfigError("Flow-Omni and the vocoder were trained on different mel settings")

    @classmethod
    def from_manifest(cls, path: str | os.PathLike) -> "FlowOmniPipeline":
        """Load the parts a manifest names (`flowomni`, `vocoder`, optional `speakers`)."""
        from voxtok.tts.frontend import TextFrontend
        from voxtok.tts.registry import load_tts_model
        from voxtok.tts.vocoder import MelVocoder

        spec = read_manifest(path)
        if spec["model"] != cls.model_name or not spec.get("flowomni") or not spec.get("vocoder"):
            raise BadConfigError("not a Flow-Omni manifest (needs model: flowomni, flowomni:, vocoder:)", path)
        model, cfg = load_tts_model(spec["flowomni"])
        if "frontend" not in cfg:
            raise BadConfigError("Flow-Omni checkpoint lacks its text frontend settings", spec["flowomni"])
        return cls(model, MelVocoder.from_pretrained(spec["vocoder"]), TextFrontend.from_dict(cfg["frontend"]),
                   SpeakerTable(spec.get("speakers")))

    @torch.inference_mode()
    def synthesize_batch(self, texts: Sequence[str], prompts: Sequence[Prompt | None], mode: str = "zero_shot",
                         speakers: Sequence[str | None] | None = None, n_steps: int | None = None,
                         cfg_strength: float | None = None, seed: int = 0, temperature: float | None = None,
                         **_unused) -> list[torch.Tensor]:
        """Texts (one prompt/speaker each) -> audio [1, T_i]; item i uses seed + i (batch == single)."""
        if cfg_strength is not None:
            raise BadConfigError("Flow-Omni has no classifier-free guidance: leave the CFG strength unset")
        speakers = list(speakers) if speakers is not None else [None] * len(texts)
        out = []
        for i, (text, prompt, speaker) in enumerate(zip(texts, prompts, speakers)):
            pick_mode(mode, None if prompt is None else prompt.wav, None if prompt is None else prompt.text, speaker)
            ids = torch.tensor(self.frontend.encode(text))
            spk = self.speakers.embedding(speaker) if mode == "sft" else prompt.spk_emb
            kw = {}
            if mode == "zero_shot":
                kw = dict(prompt_text_ids=torch.tensor(self.frontend.encode(prompt.text)), prompt_mel=prompt.mel)
            mel, lengths = self.model.synthesize(ids, spk_emb=spk[None], n_steps=n_steps, temperature=temperature,
                                                 seed=int(seed) + i, **kw)
            out.append(self.vocoder(mel[:, :, : int(lengths[0])])[0].clamp(-1, 1))
        return out

    def stream(self, *args, **kwargs):
        """Flow-Omni here synthesizes whole utterances; streaming is the CosyVoice pipeline's."""
        raise BadConfigError("streaming is available with --model cosyvoice; Flow-Omni synthesizes whole utterances")
