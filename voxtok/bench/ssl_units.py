"""DASB's discrete SSL units: k-means over the hidden states of a speech SSL model, as a VoxTok codec.

`ssl_kmeans:DIR@layer=6@k=500` takes a local transformers HuBERT / WavLM / wav2vec2 folder, fits
k-means (k clusters per layer) on frames of the benchmark's training split and encodes audio as the
index of the nearest centroid: codes [B, Q, T'] with Q = the number of layers (`layer=3+7+12`
gives DASB's multi-layer units, one codebook per layer) at the model's frame rate (50 Hz).

The fitted tokenizer is a registered VoxTok codec (`ssl_kmeans`): `save_pretrained` stores the SSL
encoder (truncated after the deepest layer used) and the centroids in one folder, `voxtok.load`
reads it back, and token files, probes and the token LM work as for any codec. It has no decoder:
`decode` is a clear error, and the benchmark skips reconstruction metrics for it.
Fits are cached in the benchmark output folder, keyed by everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch

from voxtok.bench.systems import SystemContext, SystemSpec, VoxTokSystem, int_option
from voxtok.codecs.base import Codec
from voxtok.config import check_keys, require_keys
from voxtok.errors import BadConfigError
from voxtok.registry import register

CONFIG_KEYS = ("ssl", "layers", "codebook_size", "sample_rate", "normalize")
DEFAULT_K = 500
DEFAULT_ITERS = 20
DEFAULT_MAX_FRAMES = 100_000


def _conv_geometry(ssl_config: dict) -> tuple[int, int]:
    """(hop, receptive field) in samples of the SSL model's convolutional feature encoder."""
    hop, field = 1, 1
    for kernel, stride in zip(ssl_config["conv_kernel"], ssl_config["conv_stride"]):
        field += (kernel - 1) * hop
        hop *= stride
    return hop, field


@register("codec", "ssl_kmeans")
class SSLKMeansCodec(Codec):
    """Encode-only codec: SSL hidden states of `layers` -> nearest of `codebook_size` centroids each.

    Config: ssl (the transformers config dict, with model_type), layers (list of hidden-state
    indices: 0 = the transformer's input, N = after layer N), codebook_size, sample_rate (16000),
    normalize (zero-mean unit-variance input, as the model's feature extractor does).
    """

    can_decode = False

    def __init__(self, config: dict[str, Any]):
        check_keys(config, CONFIG_KEYS, "ssl_kmeans")
        require_keys(config, CONFIG_KEYS, "ssl_kmeans")
        super().__init__(config)
        from transformers import AutoConfig, AutoModel

        ssl = dict(config["ssl"])
        model_type = ssl.pop("model_type", None)
        if model_type is None or "conv_stride" not in ssl:
            raise BadConfigError("ssl_kmeans: 'ssl' must be the config of a wav2vec2-family model (HuBERT, "
                                 "WavLM, wav2vec2) with model_type and conv_stride")
        self.encoder = AutoModel.from_config(AutoConfig.for_model(model_type, **ssl))
        self.layers = [int(layer) for layer in config["layers"]]
        depth = int(ssl["num_hidden_layers"])
        if not self.layers or not all(0 <= layer <= depth for layer in self.layers):
            raise BadConfigError(f"ssl_kmeans layers {self.layers} must lie in 0..{depth}")
        self.sample_rate = int(config["sample_rate"])
        self.hop_length, self.receptive_field = _conv_geometry(ssl)
        self.n_q = len(self.layers)
        self.codebook_size = int(config["codebook_size"])
        self.normalize = bool(config["normalize"])
        self.register_buffer("centroids", torch.zeros(self.n_q, self.codebook_size, int(ssl["hidden_size"])))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SSLKMeansCodec":
        return cls(config)

    def features(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """One signal [1, T] (or [T]) -> hidden states of every configured layer, each [ceil(T / hop), D].

        The input is padded so that the convolutional encoder yields exactly ceil(T / hop) frames,
        centred on the signal, whatever the receptive field."""
        x = wav.reshape(1, -1).float()
        frames = max(1, math.ceil(x.shape[-1] / self.hop_length))
        total = self.hop_length * (frames - 1) + self.receptive_field - x.shape[-1]
        left = (self.receptive_field - self.hop_length) // 2
        if self.normalize:
            x = (x - x.mean()) / (x.std(unbiased=False) + 1e-7)
        x = torch.nn.functional.pad(x, (left, max(0, total - left)))
        hidden = self.encoder(x, output_hidden_states=True).hidden_states
        return [hidden[layer][0, :frames] for layer in self.layers]

    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor | None, n_q: int) -> torch.Tensor:
        from voxtok.codecs.modules.quantize import _nearest

        # One signal at a time: padding would change the group-normalised features of HuBERT/wav2vec2
        # base, so a batch would not give the codes of its items alone.
        lengths = torch.full((wav.shape[0],), wav.shape[-1]) if lengths is None else lengths
        out = torch.zeros(wav.shape[0], n_q, math.ceil(wav.shape[-1] / self.hop_length), dtype=torch.long,
                          device=wav.device)
        for i, length in enumerate(lengths.tolist()):
            feats = self.features(wav[i, :, : int(length)])
            for q in range(n_q):
                codes = _nearest(feats[q], self.centroids[q])
                out[i, q, : codes.shape[0]] = codes
        return out

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise BadConfigError("ssl_kmeans units have no decoder (an encode-only tokenizer: use them for "
                             "probes, the token LM or as TTS targets)")

    def checkpoint_info(self) -> dict[str, Any]:
        return {**super().checkpoint_info(), "layers": self.layers, "can_decode": False}


def _ssl_config(model) -> dict:
    """The transformers config of `model` as a plain dict fit for `AutoConfig.for_model`."""
    config = model.config.to_dict()
    for key in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        config.pop(key, None)
    return json.loads(json.dumps(config))  # plain types only (config.yaml)


def parse_layers(text: str) -> list[int]:
    """"6" -> [6]; "3+7+12" -> [3, 7, 12] (one codebook per layer)."""
    try:
        layers = [int(part) for part in text.split("+")]
    except ValueError:
        raise BadConfigError(f"layer must be an integer or integers joined by '+', got '{text}'") from None
    if len(set(layers)) != len(layers):
        raise BadConfigError(f"layer lists '{text}' twice")
    return layers


def load_ssl_encoder(folder: str | Path, layers: Sequence[int]):
    """(transformers model truncated after the deepest layer used, its config dict, normalize flag)."""
    from voxtok.bench.hf_codecs import load_hf_model

    model, extractor = load_hf_model(folder, "cpu", "ssl_kmeans", allow_unused=True)
    if not hasattr(model, "encoder") or not hasattr(model.config, "conv_stride"):
        raise BadConfigError(f"ssl_kmeans needs a HuBERT / WavLM / wav2vec2 model, not "
                             f"'{model.config.model_type}'", folder)
    depth = len(model.encoder.layers)
    bad = [layer for layer in layers if not 0 <= layer <= depth]
    if bad:
        raise BadConfigError(f"layer {bad[0]} outside 0..{depth} (the model has {depth} layers)", folder)
    # Hidden state N is layer N's raw output only while a layer N + 1 exists: the last one gets the
    # final layer norm in the pre-norm (large) models. So one layer more than needed is kept.
    keep = min(depth, max(layers) + 1)
    model.encoder.layers = model.encoder.layers[:keep]
    model.config.num_hidden_layers = keep
    normalize = bool(getattr(extractor, "do_normalize", False))
    return model, _ssl_config(model), normalize


def fit_ssl_kmeans(folder: str | Path, layers: Sequence[int], k: int, wavs, iters: int = DEFAULT_ITERS,
                   max_frames: int = DEFAULT_MAX_FRAMES, seed: int = 0) -> SSLKMeansCodec:
    """Fit the k-means of each layer on frames of `wavs` (an iterable of 16 kHz signals [1, T]).

    At most `max_frames` frames per layer are clustered: a uniform random sample of all frames
    (each frame gets a random key; the smallest keys are kept). Returns the codec in eval mode.
    """
    from voxtok.codecs.modules.quantize import _kmeans

    model, ssl_config, normalize = load_ssl_encoder(folder, layers)
    codec = SSLKMeansCodec({"ssl": ssl_config, "layers": list(layers), "codebook_size": int(k),
                            "sample_rate": 16000, "normalize": normalize})
    codec.encoder.load_state_dict(model.state_dict())
    codec.eval()
    generator = torch.Generator().manual_seed(seed)
    kept: list[torch.Tensor] | None = None
    keys = torch.empty(0)
    with torch.inference_mode():
        for wav in wavs:
            feats = codec.features(wav)
            new_keys = torch.rand(feats[0].shape[0], generator=generator)
            keys = torch.cat([keys, new_keys])
            kept = feats if kept is None else [torch.cat([a, b]) for a, b in zip(kept, feats)]
            if keys.numel() > max_frames:
                keep = keys.topk(max_frames, largest=False).indices
                keys, kept = keys[keep], [f[keep] for f in kept]
    if kept is None or keys.numel() < k:
        raise BadConfigError(f"k-means with k={k} needs at least {k} frames; the training split gave "
                             f"{0 if kept is None else keys.numel()}")
    torch.manual_seed(seed)
    with torch.no_grad():
        for q, vectors in enumerate(kept):
            centroids, _ = _kmeans(vectors.float(), k, iters)
            codec.centroids[q].copy_(centroids)
    return codec


class SSLUnitsSystem(VoxTokSystem):
    """The `ssl_kmeans` benchmark system: fits (or takes from the cache) the units, then runs them as
    a VoxTok checkpoint. Options: layer (N or N+M+...), k (default 500), iters, max_frames."""

    def __init__(self, spec: SystemSpec, device: str = "cpu", context: SystemContext | None = None):
        from voxtok.bench.hf_codecs import weights_digest

        context = context or SystemContext()
        if "layer" not in spec.options:
            raise BadConfigError(f"ssl_kmeans needs a layer option (e.g. @layer=6): '{spec.text}'")
        layers = parse_layers(spec.options["layer"])
        k = int_option(spec, "k") or DEFAULT_K
        iters = int_option(spec, "iters") or DEFAULT_ITERS
        max_frames = int_option(spec, "max_frames") or DEFAULT_MAX_FRAMES
        if k < 2 or iters < 1 or max_frames < k:
            raise BadConfigError(f"ssl_kmeans needs k >= 2, iters >= 1 and max_frames >= k: '{spec.text}'")
        if not context.train_dir or not context.train_utts or context.cache_dir is None:
            raise BadConfigError("ssl_kmeans fits its k-means on the training split: give a training data dir "
                                 "(--train / train_dir)")
        source = Path(spec.path)
        key = hashlib.sha256(json.dumps([weights_digest(source), layers, k, iters, max_frames,
                                         context.train_fingerprint or context.train_utts],
                                        default=str).encode()).hexdigest()[:16]
        folder = Path(context.cache_dir) / f"{spec.safe_name}-{key}"
        if not (folder / "metadata.json").is_file():
            self._fit(source, layers, k, iters, max_frames, context).save_pretrained(folder)
        super().__init__(spec, device, context, path=str(folder))

    @staticmethod
    def _fit(source: Path, layers, k: int, iters: int, max_frames: int, context: SystemContext) -> SSLKMeansCodec:
        from voxtok.data.dataset import load_utterance
        from voxtok.data.kaldi import DataDir

        data = DataDir.load(context.train_dir)
        wavs = (load_utterance(data, utt, 16000) for utt in context.train_utts)
        return fit_ssl_kmeans(source, layers, k, wavs, iters, max_frames)
