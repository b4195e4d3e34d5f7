"""Train a TTS model (text-to-token LLM, flow decoder, ...) on a Kaldi data dir plus speech-token
and speaker-embedding stores; resumes from exp_dir/checkpoints/last.ckpt.

Example:
    python -m voxtok.recipes.train_tts tts=llm_tiny data_dir=data token_dir=dump/tokens/s3 \
        embedding_dir=dump/spk exp_dir=exp/mini/llm trainer.max_steps=3000

`tts=<x>` selects configs/tts/<x>.yaml; its `name:` picks the model from the TTS registry.
Inputs per split (train_split, valid_split): <data_dir>/<split> (text, utt2spk, wav.scp),
<token_dir>/<split> (a store from voxtok.recipes.tokenize), <embedding_dir>/<split> (speaker
embeddings). The vocabulary sizes and the tokenizer's name and frame rate are taken from the
frontend and the token store, overriding the YAML. The trained model is exported to
exp_dir/model (config.yaml with the frontend and token metadata + model.safetensors), loadable
with `voxtok.load`.

Fine-tuning: `init_from=DIR` starts from a VoxTok or converted (`voxtok convert cosyvoice`) TTS part:
    python -m voxtok.recipes.train_tts tts=llm_cosyvoice_300m init_from=exp/cosyvoice_300m/tts/llm/model \
        finetune=egs/libritts/conf/finetune_cosyvoice.yaml data_dir=data token_dir=dump/tokens/s3_pretrained \
        embedding_dir=dump/spk_campplus exp_dir=exp/tts/llm_finetune
- the model is DIR's: its weights and its config (the architecture the weights were made for), which
  replaces `tts.model`; `tts.name` must name DIR's model (else a one-line error); its text frontend
  is the one saved with DIR (`extra.frontend`), which replaces `tts.frontend`; a line lists what
  DIR's config overrode;
- the data must fit DIR's model: the token store must come from the tokenizer DIR was trained on
  (same checkpoint hash, codebook size and rate) and the speaker store must give DIR's speaker-vector
  size (e.g. 192-d CAM++ for a converted CosyVoice), else a one-line error;
- `finetune=FILE` applies the block of DIR's model from a fine-tuning settings file (steps, optim,
  data, frozen submodules: voxtok/tts/finetune.py); command-line settings override the file's;
- the export keeps DIR's extra (e.g. the flow's prompt_framing) and records `init_from`.
A re-run with the same exp_dir resumes from its last checkpoint, which supersedes DIR.
`freeze=[a,b]` (also without init_from) holds those submodules fixed.

Flow-Omni on a pretrained LLM is a model setting instead, `tts.model.backbone.init_from=QWEN2_DIR`
(a Hugging Face Qwen2 folder; configs/tts/flowomni_paper.yaml reads $QWEN2_DIR): its weights start the
backbone and text embedding, and the text frontend becomes that folder's tokenizer (voxtok/tts/hf_init.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import lightning as L
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from voxtok.training.lightning import check_trainer_config, fit_and_export
from voxtok.config import check_keys, dataclass_from_dict, kwargs_for, plain_data
from voxtok.data.dataset import LengthBucketSampler
from voxtok.data.options import TTSDataOptions
from voxtok.errors import BadConfigError
from voxtok.recipes import recipe_main
from voxtok.tts.dataset import TTSDataset, collate_tts
from voxtok.tts.finetune import (apply_overrides, command_line_keys, finetune_overrides, freeze_parameters,
                                 read_finetune_config)
from voxtok.tts.frontend import TextFrontend
from voxtok.tts.hf_init import backbone_frontend
from voxtok.registry import build
from voxtok.tts.train import TTSModule

# Token-store metadata worth keeping with the model: synthesis must decode with the same tokenizer.
TOKEN_META_KEYS = ("codec", "checkpoint_hash", "sample_rate", "frame_rate", "n_q", "codebook_size")
TTS_CONFIG_KEYS = ("name", "frontend", "model", "optim", "data")  # of configs/tts/<model>.yaml


def read_tts_config(tts: dict[str, Any]) -> tuple[TextFrontend, TTSDataOptions]:
    """Check a `tts:` config's top level (unknown keys are errors; name, model and optim are
    required) and return its text frontend and data options (both read strictly)."""
    check_keys(tts, TTS_CONFIG_KEYS, "tts")
    for key in ("name", "model", "optim"):
        if key not in tts:
            raise BadConfigError(f"tts config lacks '{key}'")
    frontend = TextFrontend(**kwargs_for(TextFrontend, tts.get("frontend") or {"kind": "char"}, "tts.frontend"))
    return frontend, dataclass_from_dict(TTSDataOptions, tts.get("data"), "tts.data")


def complete_model_config(model_cfg: dict[str, Any], frontend: TextFrontend,
                          token_meta: dict[str, Any] | None,
                          embedding_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fill the data-dependent keys a model config declares (any value, null included).

    text_vocab_size <- the frontend; speech_vocab_size / vocab_size <- the token store's codebook
    size; token_rate <- its frame rate; tokenizer <- {name, frame_rate, checkpoint_hash};
    spk_dim <- the speaker-embedding store's `dim` (256 resemblyzer, 192 CAM++).
    """
    cfg = dict(model_cfg)
    if "text_vocab_size" in cfg:
        cfg["text_vocab_size"] = frontend.vocab_size
    if "spk_dim" in cfg and embedding_meta and isinstance(embedding_meta.get("dim"), int):
        cfg["spk_dim"] = int(embedding_meta["dim"])
    if token_meta:
        for key in ("speech_vocab_size", "vocab_size"):
            if key in cfg:
                cfg[key] = int(token_meta["codebook_size"])
        if "token_rate" in cfg:
            cfg["token_rate"] = float(token_meta["frame_rate"])
        if "tokenizer" in cfg:
            cfg["tokenizer"] = {"name": token_meta["codec"], "frame_rate": float(token_meta["frame_rate"]),
                                "checkpoint_hash": token_meta.get("checkpoint_hash", "")}
    return cfg


def mel_setting(tts: dict[str, Any], data: TTSDataOptions) -> Any:
    """The dataset's mel config: data.mel, else the model's own mel / mel_preset key, else None."""
    if data.mel is not None:
        return data.mel
    model = tts.get("model") or {}
    return model.get("mel") or model.get("mel_preset")


def make_dataset(plain: dict[str, Any], split: str, frontend: TextFrontend, data: TTSDataOptions) -> TTSDataset:
    """TTSDataset of one split with the stores the TTS config asks for."""
    tokens = embeddings = None
    if data.tokens:
        if not plain.get("token_dir"):
            raise BadConfigError(f"tts '{plain['tts']['name']}' trains on speech tokens: set token_dir")
        tokens = Path(plain["token_dir"]) / split
    if data.embeddings:
        if not plain.get("embedding_dir"):
            raise BadConfigError(f"tts '{plain['tts']['name']}' uses speaker embeddings: set embedding_dir")
        embeddings = Path(plain["embedding_dir"]) / split
    dataset = TTSDataset(Path(plain["data_dir"]) / split, frontend, token_store=tokens, embeddings_dir=embeddings,
                         mel_config=mel_setting(plain["tts"], data), max_seconds=data.max_seconds,
                         skip_bad=bool(data.skip_bad))
    if dataset.skipped:
        print(f"{split}: skipped {len(dataset.skipped)} unusable utterance(s), e.g. "
              f"{next(iter(dataset.skipped.items()))}")
    return dataset


def make_loader(dataset: TTSDataset, data: TTSDataOptions, train: bool, seed: int) -> DataLoader:
    """Length-bucketed batches when data.max_tokens_per_batch is set, else fixed batch_size."""
    workers = int(data.num_workers)
    kw = dict(collate_fn=collate_tts, num_workers=workers, persistent_workers=workers > 0)
    if data.max_tokens_per_batch:
        sampler = LengthBucketSampler(dataset.lengths(), int(data.max_tokens_per_batch), shuffle=train, seed=seed)
        return DataLoader(dataset, batch_sampler=sampler, **kw)
    size = int(data.batch_size)
    return DataLoader(dataset, batch_size=size, shuffle=train, drop_last=train and len(dataset) > size, **kw)


def train(cfg: DictConfig, given: Iterable[str] = ()) -> Path:
    """Train (or resume, or fine-tune from `init_from`) and export the TTS model; returns the exported
    model folder. `given`: the config keys set on the command line (they win over `finetune`'s file)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    init_model = init_frontend = None
    if plain.get("init_from"):
        init_model, plain["tts"], init_frontend = start_from(plain["init_from"], plain["tts"])
        if plain.get("finetune"):
            block = read_finetune_config(plain["finetune"], init_model.registry_name)
            applied = apply_overrides(plain, finetune_overrides(block), given)
            print(f"finetune {plain['finetune']}: {', '.join(applied) or 'nothing'} from its "
                  f"'{init_model.registry_name}' block", flush=True)
    elif plain.get("finetune"):
        raise BadConfigError("finetune settings apply to a model to start from: set init_from")
    tcfg, tts = check_trainer_config(plain["trainer"]), plain["tts"]
    frontend, data = read_tts_config(tts)
    frontend = init_frontend or frontend
    frontend = backbone_frontend(tts, frontend)  # model.backbone.init_from: the LLM's own tokenizer
    seed = int(tcfg["seed"])
    L.seed_everything(seed, workers=True, verbose=False)
    train_set = make_dataset(plain, plain["train_split"], frontend, data)
    valid_set = make_dataset(plain, plain["valid_split"], frontend, data)
    token_meta = None
    if train_set.tokens is not None:
        token_meta = {k: train_set.tokens.meta[k] for k in TOKEN_META_KEYS if k in train_set.tokens.meta}
        if valid_set.tokens.meta.get("checkpoint_hash") != token_meta.get("checkpoint_hash"):
            raise BadConfigError("train and valid token stores were made by different tokenizer checkpoints",
                                 valid_set.tokens.root)
    embedding_meta = getattr(train_set.embeddings, "meta", None)  # a ShardStore's meta.json (or None)
    extra = {"frontend": frontend.to_dict(), "tokens": token_meta}
    if init_model is not None:
        check_data_fits(init_model, frontend, token_meta, embedding_meta, plain)
        model = init_model
        extra = {**init_model.extra, **extra, "init_from": str(plain["init_from"])}
    else:
        model_cfg = complete_model_config(tts["model"], frontend, token_meta, embedding_meta)
        model = build("tts", tts["name"], model_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{tts['name']}: {n_params / 1e6:.2f} M parameters, {len(train_set)} train / {len(valid_set)} valid "
          "utterances")
    if plain.get("freeze"):
        frozen, trainable = freeze_parameters(model, plain["freeze"])
        print(f"freeze {', '.join(plain['freeze'])}: {frozen / 1e6:.2f} M parameters held fixed, "
              f"{trainable / 1e6:.2f} M train", flush=True)
    module = TTSModule(model, tts["optim"], max_steps=int(tcfg["max_steps"]), where="tts.optim")
    return fit_and_export(module, make_loader(train_set, data, True, seed), make_loader(valid_set, data, False, seed),
                          tcfg, plain["exp_dir"], tts["name"],
                          export=lambda out: model.save_pretrained(out, extra=extra))


def start_from(folder: str | Path, tts: dict[str, Any]) -> tuple[Any, dict[str, Any], TextFrontend | None]:
    """The TTS model of checkpoint folder `folder` (weights loaded, train mode), the `tts:` config with
    `model` taken from the folder, and the text frontend the folder saved (None: none saved; the
    config's is used). See the module docstring."""
    from voxtok.config import differing_keys
    from voxtok.registry import load, read_metadata

    meta = read_metadata(folder)
    if meta["kind"] != "tts" or meta["name"] != tts.get("name"):
        raise BadConfigError(f"init_from holds a {meta['kind']} '{meta['name']}', but tts.name is "
                             f"'{tts.get('name')}' (choose the tts config of that model)", folder)
    model = load(folder, kind="tts").train()
    overridden = differing_keys(tts.get("model"), model.to_config(), "tts.model")
    tts = {**tts, "model": model.to_config()}
    frontend = None
    if model.extra.get("frontend"):
        frontend = TextFrontend.from_dict(model.extra["frontend"])
        if read_tts_config(tts)[0].to_dict() != frontend.to_dict():
            overridden.append("tts.frontend")
    shown = ", ".join(overridden[:8]) + (" ..." if len(overridden) > 8 else "")
    print(f"init_from {folder}: {meta['name']} weights, model config{' and text frontend' if frontend else ''} "
          f"from there" + (f"; its config replaced {shown}" if overridden else ""), flush=True)
    return model, tts, frontend


def check_data_fits(model: Any, frontend: TextFrontend, token_meta: dict[str, Any] | None,
                    embedding_meta: dict[str, Any] | None, plain: dict[str, Any]) -> None:
    """One-line BadConfigError when the training data does not fit the `init_from` model: a text
    vocabulary, token store (tokenizer checkpoint, codebook, rate) or speaker-vector size other
    than the one its config and `extra.tokens` record."""
    config = model.to_config()
    want = complete_model_config(config, frontend, token_meta, embedding_meta)
    source = {"text_vocab_size": "the text frontend", "spk_dim": f"embedding_dir {plain.get('embedding_dir')}"}
    made_by = ((model.extra.get("tokens") or {}).get("checkpoint_hash")
               or (config.get("tokenizer") or {}).get("checkpoint_hash"))
    problems = []
    if token_meta and made_by and token_meta.get("checkpoint_hash") != made_by:
        problems.append(f"token_dir {plain.get('token_dir')} holds tokens of tokenizer checkpoint "
                        f"{token_meta.get('checkpoint_hash')}, the model was trained on checkpoint {made_by}'s")
    # With the checkpoint known, the tokenizer record (name, rate, hash) is checked by the line above.
    problems += [f"{key} {plain_data(config[key])} in the model, {plain_data(want[key])} from "
                 f"{source.get(key, 'token_dir ' + str(plain.get('token_dir')))}"
                 for key in want if plain_data(want[key]) != plain_data(config[key])
                 and not (key == "tokenizer" and made_by)]
    if problems:
        raise BadConfigError(f"the training data does not fit the init_from model: {'; '.join(problems)} "
                             "(tokenize with the model's tokenizer and compute speaker vectors with its speaker "
                             "encoder)", plain["init_from"])


@recipe_main("train_tts")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    train(cfg, command_line_keys(HydraConfig.get().overrides.task))


if __name__ == "__main__":
    main()
