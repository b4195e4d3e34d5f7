"""CosyVoice-style synthesis: text -> speech tokens (LLM) -> mel (flow matching) -> audio (vocoder).

Modes (as in CosyVoice):
  zero_shot      reference audio + its transcript: the LLM continues the reference's tokens,
                 the flow continues its mel, the speaker embedding comes from it.
  cross_lingual  reference audio without a transcript: the LLM sees only the speaker embedding,
                 the flow still takes the reference's tokens and mel as its prompt.
  sft            a stored speaker id: embedding from the spk2embedding store, no prompt.
Streaming decodes token chunks as the LLM produces them (see `stream`).

Prompt framing (the flow checkpoint's `extra.prompt_framing`, see PROMPT_FRAMINGS): how the prompt's
speech tokens and mel are cut before they reach the LLM and the flow.
  aligned    (VoxTok's own models, the default) both are cut to one span of whole tokens, so the
             prompt's tokens and frames line up on the flow's token grid;
  reference  (`voxtok convert cosyvoice`) as CosyVoice v1's frontend (`frontend_zero_shot`): every
             token the tokenizer gives and the whole mel, which the flow's length regulator
             interpolates on their own. The same x-vector conditions the LLM and the flow in every
             mode, as there (`llm_embedding` = `flow_embedding`).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from voxtok.errors import BadConfigError, BadTokenFileError
from voxtok.nn.sampling import item_seeds
from voxtok.registry import register
from voxtok.tts.pipeline import (Prompt, SpeakerTable, StreamingVocoder, TTSPipeline, check_mode_inputs, is_vocoder,
                                  load_vocoder, open_prompt_speaker_encoder)

PROMPT_FRAMINGS = ("aligned", "reference")


@register("pipeline", "cosyvoice")
class CosyVoicePipeline(TTSPipeline):
    """The trained parts of a CosyVoice-style TTS, ready to synthesize.

    llm: TextToTokenLM; flow: FlowDecoder; vocoder: a mel vocoder (MelVocoder or HiFT); tokenizer:
    the Codec that made the training tokens (prompt audio is tokenized with it); frontend:
    TextFrontend; speakers: SpeakerTable for `sft`; speaker_encoder: the prompt x-vector model
    (CamPlusEncoder) or None for resemblyzer; prompt_framing: one of PROMPT_FRAMINGS (module
    docstring). Output audio is at `sample_rate` (the vocoder's).
    """

    label = "CosyVoice-style"
    streaming = True
    cfg = True
    required_parts = ("llm", "flow", "vocoder", "tokenizer")
    optional_parts = ("speakers", "speaker_encoder")

    def __init__(self, llm, flow, vocoder, tokenizer, frontend, speakers: SpeakerTable | None = None,
                 speaker_encoder=None, prompt_framing: str = "aligned"):
        self.llm, self.flow, self.vocoder, self.tokenizer, self.frontend = llm, flow, vocoder, tokenizer, frontend
        self.speakers = speakers or SpeakerTable(None)
        self._speaker_encoder = speaker_encoder
        if prompt_framing not in PROMPT_FRAMINGS:
            raise BadConfigError(f"prompt_framing must be one of {PROMPT_FRAMINGS}, got {prompt_framing!r}")
        self.prompt_framing = prompt_framing
        if not is_vocoder(vocoder):
            raise BadConfigError(f"{type(vocoder).__name__} is not a vocoder (mel in, audio out)")
        self.sample_rate = int(vocoder.sample_rate)
        self.mel_config = flow.mel_config
        self.spk_dim = int(flow.spk_dim)
        if int(llm.config.spk_dim) != self.spk_dim:
            raise BadConfigError(f"the LLM takes {llm.config.spk_dim}-d speaker vectors, the flow {self.spk_dim}-d")
        for what, dim in (("the speaker_encoder", getattr(speaker_encoder, "dim", None)),
                          ("the stored voices", self.speakers.dim)):
            if dim is not None and int(dim) != self.spk_dim:
                raise BadConfigError(f"{what} give {dim}-d vectors; the LLM and flow take {self.spk_dim}-d")
        if vocoder.mel_config != flow.mel_config:
            raise BadConfigError("the flow decoder and the vocoder were trained on different mel settings")
        if flow.vocab_size != tokenizer.codebook_size or llm.config.speech_vocab_size != tokenizer.codebook_size:
            raise BadConfigError(f"LLM/flow vocabularies ({llm.config.speech_vocab_size}/{flow.vocab_size}) do not "
                                 f"match the tokenizer's {tokenizer.codebook_size} codes")
        for part in (llm, flow, vocoder):
            part.eval()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_manifest(cls, spec: dict, map_location: str | torch.device = "cpu") -> "CosyVoicePipeline":
        """Load every part a read manifest names (voxtok/tts/manifest.py: absolute paths) onto `map_location`."""
        from voxtok.registry import load
        from voxtok.tts.frontend import TextFrontend

        cls.check_manifest(spec)
        llm, flow = load(spec["llm"], map_location, kind="tts"), load(spec["flow"], map_location, kind="tts")
        tokenizer = load(spec["tokenizer"], map_location, kind="codec")
        for name, part in (("LLM", llm), ("flow", flow)):
            made_by = (part.extra.get("tokens") or {}).get("checkpoint_hash")
            if made_by and made_by != tokenizer.checkpoint_hash:
                raise BadTokenFileError(f"the {name} was trained on tokens of checkpoint {made_by}, but the "
                                        f"tokenizer given is {tokenizer.checkpoint_hash}", spec["tokenizer"])
        if "frontend" not in llm.extra:
            raise BadConfigError("LLM checkpoint lacks its text frontend settings", spec["llm"])
        framing = flow.extra.get("prompt_framing", "aligned")
        if framing not in PROMPT_FRAMINGS:
            raise BadConfigError(f"flow prompt_framing {framing!r} is not one of {PROMPT_FRAMINGS}", spec["flow"])
        try:
            return cls(llm, flow, load_vocoder(spec["vocoder"], map_location), tokenizer,
                       TextFrontend.from_dict(llm.extra["frontend"]), SpeakerTable(spec.get("speakers")),
                       open_prompt_speaker_encoder(spec.get("speaker_encoder"), map_location), framing)
        except BadConfigError as err:  # parts that do not fit one another: name the manifest
            if err.path is not None:
                raise
            raise BadConfigError(str(err), getattr(spec, "path", None)) from None

    # ------------------------------------------------------------------ prompts
    def prepare_prompt(self, wav: torch.Tensor, sample_rate: int, text: str | None = None,
                       name: object = "<prompt>") -> Prompt:
        """Reference audio [1, T] (+ transcript) -> Prompt with tokens, mel and speaker embedding.

        Tokens come from the tokenizer (audio resampled to its rate; float32 whatever `dtype`, so they
        equal the tokenize stage's), the mel at the flow's mel settings, the embedding from the speaker
        encoder; all three on the pipeline's device. With the "aligned" framing, tokens and mel
        are trimmed to the same span (whole tokens) so the flow's prompt lines up; with "reference"
        both are kept whole (see the module docstring).
        Silent, too short (< 0.5 s) or too long (> 30 s) audio raises BadAudioError.
        """
        from voxtok.audio import resample

        prompt = super().prepare_prompt(wav, sample_rate, text, name)
        tok_wav = resample(prompt.wav, sample_rate, self.tokenizer.sample_rate)
        with torch.inference_mode():
            tokens = self.tokenizer.encode(tok_wav[None].to(self.device))[0, 0]
        # The codec's own count: a padded last frame is not a token of the prompt (S3: ceil(mel frames / 2)).
        tokens = tokens[: int(self.tokenizer.code_lengths(torch.tensor([tok_wav.shape[-1]]))[0])]
        mel = prompt.mel
        if self.prompt_framing == "reference":
            prompt.tokens = tokens
            return prompt
        n_tok = min(tokens.numel(), int(mel.shape[-1] * self.flow.token_rate / self.flow.mel_rate))
        tokens = tokens[:n_tok]
        mel = mel[:, : int(self.flow.frames_for_tokens(n_tok))]
        prompt.tokens, prompt.mel = tokens, mel
        return prompt

    def _conditioning(self, mode: str, prompt: Prompt | None, speaker: str | None):
        """(spk_emb [spk_dim] for the LLM and the flow, LLM prompt text ids | None, LLM prompt tokens | None,
        flow prompt tokens, flow prompt mel), as CosyVoice's frontend_zero_shot / _cross_lingual / _sft."""
        device = self.device
        if mode == "sft":
            return self.speakers.embedding(speaker).to(device), None, None, None, None
        text_ids = self._text_ids(prompt.text) if mode == "zero_shot" else None
        # A prompt prepared before `to` (or by another pipeline) still works; otherwise these moves do nothing.
        tokens, mel = (None if t is None else t.to(device) for t in (prompt.tokens, prompt.mel))
        return prompt.spk_emb.to(device), text_ids, tokens if mode == "zero_shot" else None, tokens, mel

    def _text_ids(self, text: str) -> torch.Tensor:
        """Text -> frontend ids [L] on the pipeline's device."""
        return torch.tensor(self.frontend.encode(text), dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ synthesis
    @torch.inference_mode()
    def synthesize_batch(self, texts: Sequence[str], prompts: Sequence[Prompt | None], mode: str = "zero_shot",
                         speakers: Sequence[str | None] | None = None, n_steps: int | None = None,
                         cfg_strength: float | None = None, seed: int = 0, sampling=None) -> list[torch.Tensor]:
        """Texts (one prompt/speaker each) -> list of audio [1, T_i] at `sample_rate`.

        Item i uses seed + i in the LLM and the flow, so a batch equals one-by-one synthesis
        with the matching seeds. The models run under `precision()` on the pipeline's device; the
        audio comes back float32 on the CPU. Empty or too long text raises BadTextError.
        """
        speakers = list(speakers) if speakers is not None else [None] * len(texts)
        if not (len(texts) == len(prompts) == len(speakers)):
            raise BadConfigError("texts, prompts and speakers must have the same length")
        self.check_options(mode, cfg_strength=cfg_strength)
        for p, s in zip(prompts, speakers):
            check_mode_inputs(mode, p, s)
        text_ids = [self._text_ids(t) for t in texts]
        conds = [self._conditioning(mode, p, s) for p, s in zip(prompts, speakers)]
        seeds = item_seeds(seed, len(texts))
        spk = torch.stack([c[0] for c in conds])
        has_llm_prompt = conds[0][1] is not None
        out = []
        with self.precision():
            tokens = self.llm.generate(text_ids, spk, [c[1] for c in conds] if has_llm_prompt else None,
                                       [c[2] for c in conds] if has_llm_prompt else None, sampling=sampling,
                                       seed=seeds)
            for i, toks in enumerate(tokens):
                toks = toks if toks.numel() else torch.zeros(1, dtype=torch.long)  # an instant EOS still gives audio
                _, _, _, p_tok, p_mel = conds[i]
                mel, lengths = self.flow.synthesize(
                    toks[None].to(spk.device), None, spk[i:i + 1], None if p_tok is None else p_tok[None],
                    None if p_mel is None else p_mel[None], n_steps=n_steps, cfg_strength=cfg_strength,
                    seed=seeds[i])
                audio = self.vocoder(mel[:, :, : int(lengths[0])])[0]
                out.append(audio.float().cpu().clamp(-1, 1))
        return out

    def stream(self, text: str, prompt: Prompt | None = None, mode: str = "zero_shot", speaker: str | None = None,
               n_steps: int | None = None, cfg_strength: float | None = None, seed: int = 0, sampling=None,
               chunk_tokens: int | None = None, first_chunk_tokens: int | None = None) -> Iterator[torch.Tensor]:
        """Yield audio chunks [T_k] (float32, CPU) while the LLM is still decoding; each step runs under
        `precision()` on the pipeline's device.

        Tokens arrive in chunks of `chunk_tokens` (the flow's streaming default); chunk [a, b) is
        decoded by the flow once the look-ahead tokens after b exist (or decoding ended), with
        the audio of the overlap cross-faded into the next chunk. The chunks concatenate to
        flow.frames_for_tokens(N) * hop samples, the length of `synthesize` for the same tokens.
        """
        return self.precise_steps(self._stream(text, prompt, mode, speaker, n_steps, cfg_strength, seed, sampling,
                                               chunk_tokens, first_chunk_tokens))

    @torch.inference_mode()
    def _stream(self, text, prompt, mode, speaker, n_steps, cfg_strength, seed, sampling, chunk_tokens,
                first_chunk_tokens) -> Iterator[torch.Tensor]:
        """The steps of `stream` (same arguments), audio chunks on the pipeline's device."""
        self.check_options(mode, streaming=True, cfg_strength=cfg_strength)
        check_mode_inputs(mode, prompt, speaker)
        spk, p_text, p_llm_tok, p_tok, p_mel = self._conditioning(mode, prompt, speaker)
        text_ids = self._text_ids(text)
        size = int(chunk_tokens or self.flow.streaming["chunk_tokens"])
        overlap = int(self.flow.streaming["overlap_tokens"])
        voc = StreamingVocoder(self.vocoder)
        tokens: list[int] = []
        bounds: list[tuple[int, int]] = []  # chunks waiting for their look-ahead
        emitted_mel = None
        kw = dict(n_steps=n_steps, cfg_strength=cfg_strength, seed=seed)

        def decode(start: int, end: int):
            nonlocal emitted_mel
            toks = torch.tensor(tokens, dtype=torch.long, device=spk.device)[None]
            mel, lengths = self.flow.synthesize_chunk(
                toks, None, spk[None], start, end, None if p_tok is None else p_tok[None],
                None if p_mel is None else p_mel[None], prev_mel=emitted_mel, **kw)
            mel = mel[0, :, : int(lengths[0])]
            keep = int(self.flow.frames_for_tokens(end) - self.flow.frames_for_tokens(start))
            emitted_mel = (mel[None, :, :keep] if emitted_mel is None
                           else torch.cat([emitted_mel, mel[None, :, :keep]], dim=-1))
            return voc.push(mel, keep)

        first = first_chunk_tokens or size
        for chunk in self.llm.stream_generate(text_ids, spk[None], p_text, p_llm_tok, sampling=sampling, seed=seed,
                                              chunk_size=size, first_chunk_size=first):
            start = len(tokens)
            tokens.extend(int(t) for t in chunk)
            bounds.append((start, len(tokens)))
            while bounds and bounds[0][1] + overlap <= len(tokens):
                yield decode(*bounds.pop(0)).cpu()
        if not tokens:  # the LLM stopped at once: still give the (short) audio of one token
            tokens.append(0)
            bounds.append((0, 1))
        while bounds:
            yield decode(*bounds.pop(0)).cpu()
