"""Flow-Omni synthesis: text (+ prompt mel) -> continuous mel frames (LLM + flow head) -> vocoder.

Modes mirror the CosyVoice pipeline:
  zero_shot      the prompt's transcript and mel frames prefix the sequence, plus its speaker embedding;
  cross_lingual  no transcript: only the prompt's speaker embedding conditions the model;
  sft            a stored speaker's embedding.
"""

from __future__ import annotations

from typing import Sequence

import torch

from voxtok.errors import BadConfigError
from voxtok.nn.sampling import item_seeds
from voxtok.registry import register
from voxtok.tts.pipeline import Prompt, SpeakerTable, TTSPipeline, check_mode_inputs


@register("pipeline", "flowomni")
class FlowOmniPipeline(TTSPipeline):
    """model: FlowOmniTTS; vocoder: MelVocoder (same mel front end); frontend: TextFrontend.

    It synthesizes whole utterances (no streaming) and has no classifier-free guidance.
    """

    label = "Flow-Omni"
    streaming = False
    cfg = False
    required_parts = ("flowomni", "vocoder")

    def __init__(self, model, vocoder, frontend, speakers: SpeakerTable | None = None):
        self.model, self.vocoder, self.frontend = model.eval(), vocoder.eval(), frontend
        self.speakers = speakers or SpeakerTable(None)
        self.sample_rate = int(vocoder.sample_rate)
        self.mel_config = model.mel_config
        if vocoder.mel_config != model.mel_config:
            raise BadConfigError("Flow-Omni and the vocoder were trained on different mel settings")

    @classmethod
    def from_manifest(cls, spec: dict, map_location: str | torch.device = "cpu") -> "FlowOmniPipeline":
        """Load the parts a read manifest names (`flowomni`, `vocoder`, optional `speakers`)."""
        from voxtok.registry import load
        from voxtok.tts.frontend import TextFrontend
        from voxtok.tts.vocoder import MelVocoder

        cls.check_manifest(spec)
        model = load(spec["flowomni"], map_location, kind="tts")
        if "frontend" not in model.extra:
            raise BadConfigError("Flow-Omni checkpoint lacks its text frontend settings", spec["flowomni"])
        return cls(model, MelVocoder.from_pretrained(spec["vocoder"], map_location),
                   TextFrontend.from_dict(model.extra["frontend"]), SpeakerTable(spec.get("speakers")))

    @torch.inference_mode()
    def synthesize_batch(self, texts: Sequence[str], prompts: Sequence[Prompt | None], mode: str = "zero_shot",
                         speakers: Sequence[str | None] | None = None, n_steps: int | None = None,
                         cfg_strength: float | None = None, seed: int = 0, temperature: float | None = None,
                         **_unused) -> list[torch.Tensor]:
        """Texts (one prompt/speaker each) -> audio [1, T_i]; item i uses seed + i (batch == single)."""
        self.check_options(mode, cfg_strength=cfg_strength)
        speakers = list(speakers) if speakers is not None else [None] * len(texts)
        seeds = item_seeds(seed, len(texts))
        out = []
        for i, (text, prompt, speaker) in enumerate(zip(texts, prompts, speakers)):
            check_mode_inputs(mode, prompt, speaker)
            ids = torch.tensor(self.frontend.encode(text))
            spk = self.speakers.embedding(speaker) if mode == "sft" else prompt.spk_emb
            kw = {}
            if mode == "zero_shot":
                kw = dict(prompt_text_ids=torch.tensor(self.frontend.encode(prompt.text)), prompt_mel=prompt.mel)
            mel, lengths = self.model.synthesize(ids, spk_emb=spk[None], n_steps=n_steps, temperature=temperature,
                                                 seed=seeds[i], **kw)
            out.append(self.vocoder(mel[:, :, : int(lengths[0])])[0].clamp(-1, 1))
        return out
