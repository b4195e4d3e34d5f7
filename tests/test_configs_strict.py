"""Strict configs: in every config family a misspelt key, top-level or nested (loss weights
included), is a one-line BadConfigError naming the key's path; every shipped config still loads;
the one optimiser / scheduler builder keeps each trainer's old optimiser and schedule."""

import copy
import math
import sys

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from voxtok.codecs import gan_config, train_asr
from voxtok.training.lightning import check_trainer_config
from voxtok.config import dataclass_from_dict
from voxtok.data.options import ClipDataOptions, TTSDataOptions, TranscribedDataOptions
from voxtok.errors import BadConfigError
from voxtok.recipes import CONFIG_DIR
from voxtok.training.optim import OptimConfig, build_optimizer, build_scheduler, read_optim_config, warmup_cosine
from voxtok.tts import flow, flowomni
from voxtok.tts.llm import TextToTokenLMConfig
from voxtok.tts.train import OPTIM_DEFAULTS as TTS_OPTIM_DEFAULTS
from voxtok.tts.train import TTSModule


def fails(fn, *args, key: str, **kwargs) -> str:
    """Run fn, expect a one-line BadConfigError that names `key`; return the message."""
    with pytest.raises(BadConfigError) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    assert f"'{key}'" in message and "\n" not in message, message
    return message


def with_key(cfg: dict, path: str, value=1) -> dict:
    """A deep copy of `cfg` with `value` set at the dotted `path` (blocks created as needed)."""
    cfg = copy.deepcopy(cfg)
    *blocks, last = path.split(".")
    node = cfg
    for block in blocks:
        node = node.setdefault(block, {})
    node[last] = value
    return cfg


def shipped(folder: str) -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted((CONFIG_DIR / folder).glob("*.yaml"))}


# ----------------------------------------------------------------------------- TTS model configs

LLM = dict(text_vocab_size=40, speech_vocab_size=20, text_embed_dim=16,
           text_encoder=dict(dim=32, layers=1, heads=2, ffn_dim=64, dropout=0.0),
           backbone=dict(kind="qwen2", hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64),
           spk_dim=8)


def test_llm_config_names_misspelt_keys_at_every_level():
    read = TextToTokenLMConfig.from_dict
    message = fails(read, with_key(LLM, "n_layers", 3), key="llm.n_layers")
    assert "allowed:" in message and "text_encoder" in message
    fails(read, with_key(LLM, "text_encoder.dimm"), key="llm.text_encoder.dimm")
    fails(read, with_key(LLM, "backbone.hidden_sise"), key="llm.backbone.hidden_sise")
    fails(read, with_key(LLM, "sampling.top_pp"), key="llm.sampling.top_pp")
    fails(read, with_key(LLM, "tokenizer.nmae", "s3"), key="llm.tokenizer.nmae")
    fails(read, with_key(LLM, "n_layers", None), key="llm.n_layers")  # null does not hide a typo
    assert read(LLM).text_encoder["dim"] == 32  # the valid config still reads


FLOW = {"vocab_size": 32, "embed_dim": 32, "encoder": {"dim": 32, "heads": 2, "ff_dim": 64, "layers": 1},
        "length_regulator": {"n_convs": 1},
        "estimator": {"kind": "unet", "channels": [32], "n_blocks": 1, "num_mid_blocks": 1, "heads": 2, "head_dim": 16}}


def test_flow_config_names_misspelt_keys_at_every_level_and_per_estimator_kind():
    read = flow.merge_config
    fails(read, with_key(FLOW, "bogus"), key="flow.bogus")
    fails(read, with_key(FLOW, "cfm.sigma_mn"), key="flow.cfm.sigma_mn")
    fails(read, with_key(FLOW, "encoder.ffdim"), key="flow.encoder.ffdim")
    fails(read, with_key(FLOW, "estimator.n_blcks"), key="flow.estimator.n_blcks")
    dit = {"kind": "dit", "dim": 32, "depth": 1, "heads": 2, "head_dim": 16, "conv_pos_kernel": 7, "conv_pos_groups": 4}
    fails(read, {**FLOW, "estimator": {**dit, "depht": 2}}, key="flow.estimator.depht")
    fails(read, {**FLOW, "estimator": {**dit, "channels": [32]}}, key="flow.estimator.channels")  # a U-Net key
    with pytest.raises(BadConfigError, match="estimator kind"):
        read({**FLOW, "estimator": {"kind": "wavenet"}})
    model = flow.FlowDecoder({**FLOW, "estimator": dit})  # both kinds build
    assert model.to_config()["estimator"] == dit
    fails(flow.FlowDecoder, with_key(FLOW, "streaming.chunk"), key="flow.streaming.chunk")


FLOWOMNI = {"text_vocab_size": 30, "frames_per_step": 2, "head": {"width": 240, "depth": 1},
            "backbone": {"kind": "qwen2", "hidden_size": 32, "num_layers": 1, "num_heads": 4, "intermediate_size": 64}}


def test_flowomni_config_names_misspelt_keys_at_every_level():
    read = flowomni.merge_config
    fails(read, with_key(FLOWOMNI, "frames_per_stp", 2), key="flowomni.frames_per_stp")
    fails(read, with_key(FLOWOMNI, "head.widht", 32), key="flowomni.head.widht")
    fails(read, with_key(FLOWOMNI, "loss.state_wieght", 1.0), key="flowomni.loss.state_wieght")
    fails(read, with_key(FLOWOMNI, "backbone.hiden_size", 32), key="flowomni.backbone.hiden_size")
    fails(read, with_key(FLOWOMNI, "spk_dimm", None), key="flowomni.spk_dimm")
    merged = read({**FLOWOMNI, "text_vocab_size": None})  # null still means the default
    assert merged["text_vocab_size"] == flowomni.DEFAULTS["text_vocab_size"]
    assert merged["backbone"] == FLOWOMNI["backbone"]  # taken whole, not merged with Qwen2-0.5B sizes


VOCODER = {"mel": "cosyvoice", "backbone": {"dim": 16, "intermediate_dim": 32, "num_layers": 1}, "head": {"n_fft": 1024}}


def test_vocoder_config_names_misspelt_keys_at_every_level():
    from voxtok.tts.vocoder import MelVocoder

    fails(MelVocoder, with_key(VOCODER, "backbon"), key="vocoder.backbon")
    fails(MelVocoder, with_key(VOCODER, "backbone.dimm"), key="vocoder.backbone.dimm")
    fails(MelVocoder, with_key(VOCODER, "head.nfft"), key="vocoder.head.nfft")
    with pytest.raises(BadConfigError, match="backbone is required"):
        MelVocoder({"mel": "cosyvoice"})
    assert MelVocoder(VOCODER).to_config() == VOCODER


# ----------------------------------------------------------------------------- trainers

GAN = {"name": "x", "model": {}, "data": {"crop_seconds": 1.0, "batch_size": 2},
       "discriminators": {"names": ["mpd", "mrd"], "options": {"mpd": {"channels": 4}}},
       "loss": {"mel": {"weight": 45.0, "n_ffts": [1024], "n_mels": 80}, "aux": {"commit": 10.0, "codebook": 1.0}},
       "optim": {"lr": 1e-3, "disc_start_step": 5}}
WAVTOKENIZER_LOSSES = ("commit", "codebook")


def test_gan_config_names_misspelt_keys_and_weights_of_losses_never_produced():
    def read(cfg, losses=WAVTOKENIZER_LOSSES):
        return gan_config.read_gan_config(cfg, losses, "codec")

    fails(read, with_key(GAN, "losss"), key="codec.losss")
    fails(read, with_key(GAN, "discriminators.optoins"), key="codec.discriminators.optoins")
    fails(read, with_key(GAN, "discriminators.options.mpd.chanels"), key="codec.discriminators.options.mpd.chanels")
    fails(read, with_key(GAN, "discriminators.options.msd", {}), key="codec.discriminators.options.msd")  # not listed
    fails(read, with_key(GAN, "loss.feature_maching", 2.0), key="codec.loss.feature_maching")
    fails(read, with_key(GAN, "loss.mel.n_fft", 512), key="codec.loss.mel.n_fft")
    fails(read, with_key(GAN, "loss.aux.comit", 1.0), key="codec.loss.aux.comit")
    # A loss the generator never produces: WavTokenizer has no distillation, a vocoder no aux loss.
    message = fails(read, with_key(GAN, "loss.aux.distill_lm", 1.0), key="codec.loss.aux.distill_lm")
    assert "codebook, commit" in message
    fails(read, GAN, (), key="codec.loss.aux.commit")
    fails(read, with_key(GAN, "optim.lrr", 1e-3), key="codec.optim.lrr")
    fails(read, with_key(GAN, "optim.disc_start", 0), key="codec.optim.disc_start")
    with pytest.raises(BadConfigError, match="codec.loss.mel.weight is required"):
        read(with_key(GAN, "loss.mel", {"n_ffts": [1024]}))
    with pytest.raises(BadConfigError, match="codec.optim.lr is required"):
        read(with_key(GAN, "optim", {}))
    gan = read(GAN)
    assert gan.aux == {"commit": 10.0, "codebook": 1.0} and gan.disc_start_step == 5
    # The GAN trainer's own defaults: HiFi-GAN betas, fused AdamW, clip 1000.
    assert (gan.optim.betas, gan.optim.fused, gan.optim.grad_clip, gan.optim.weight_decay) == ((0.8, 0.9), True, 1e3, 0.0)
    assert gan.adversarial == "hinge" and gan.feature_matching == 1.0 and gan.stoi == 0.0


def test_generators_list_the_losses_they_produce():
    """`loss_names` is what `loss.aux` is checked against: it must match what training returns."""
    from voxtok.registry import build

    tiny = {name: cfg for name, cfg in shipped("codec").items() if name.endswith("_tiny") and cfg["name"] != "s3"}
    for name, cfg in tiny.items():
        model = copy.deepcopy(cfg["model"])
        for teacher in (model.get("distill") or {}).values():
            teacher["dim"] = teacher["dim"] or 8
        codec = build("codec", cfg["name"], model)
        assert set(cfg["loss"]["aux"]) <= set(codec.loss_names), name
    dm = shipped("codec")["dmcodec_lm_tiny"]["model"]
    codec = build("codec", "dmcodec", {**dm, "distill": {"lm": {"dim": 8, "layer": 1, "frame_loss": "d_axis"}}})
    assert codec.loss_names == ("commit", "codebook", "distill_lm")
    fuse = shipped("codec")["fusecodec_tiny"]["model"]
    distill = {"lm": {"dim": 8, "layer": 1, "frame_loss": None}, "sm": {"dim": 8, "layer": 1, "frame_loss": None}}
    codec = build("codec", "fusecodec", {**fuse, "distill": distill, "context_alignment": {"enabled": False}})
    assert codec.loss_names == ("commit", "codebook", "global_sm", "global_lm")


def test_gan_module_refuses_a_loss_missing_from_loss_names():
    from voxtok.codecs.gan_trainer import GANModule
    from voxtok.codecs.modules.outputs import GeneratorOutput

    class Generator(torch.nn.Module):
        loss_names = ("commit",)

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def training_forward(self, wav, lengths, step=0):
            return GeneratorOutput(wav * self.scale, {"commit": self.scale.sum(), "unlisted": self.scale.sum()}, {})

    cfg = {**GAN, "discriminators": {"names": ["mpd"], "options": {"mpd": {"channels": 4, "max_channels": 8}}},
           "loss": {"mel": {"weight": 1.0, "n_ffts": [256], "n_mels": 20}, "aux": {"commit": 1.0}},
           "optim": {"lr": 1e-3, "disc_start_step": 10, "fused": False}}
    module = GANModule(Generator(), cfg, max_steps=1, sample_rate=16000, where="codec")
    opt = torch.optim.SGD(module.generator.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    module.optimizers, module.lr_schedulers = (lambda: [opt, opt]), (lambda: [sched, sched])  # no Trainer needed
    with pytest.raises(BadConfigError, match="unlisted"):
        module.training_step({"wav": torch.randn(1, 1, 4000), "lengths": torch.tensor([4000])}, 0)


def test_ctc_trainer_names_misspelt_keys_and_weights():
    class Recognizer(torch.nn.Linear):
        loss_names = ("ctc", "commit", "codebook")

    def module(cfg):
        return train_asr.CTCModule(Recognizer(2, 2), cfg, max_steps=10, where="codec")

    s3 = shipped("codec")["s3_tiny"]
    fails(module, with_key(s3, "los", {}), key="codec.los")
    fails(module, with_key(s3, "loss.ctcc", 1.0), key="codec.loss.ctcc")
    fails(module, with_key(s3, "optim.warmup", 10), key="codec.optim.warmup")
    ctc = module(s3)
    assert ctc.loss_weights == {"ctc": 1.0, "commit": 0.25, "codebook": 1.0}
    assert (ctc.optim.lr, ctc.optim.betas, ctc.optim.grad_clip, ctc.optim.final_lr_ratio) == (2e-3, (0.9, 0.98), 5.0, 0.05)
    assert module({**s3, "optim": {"lr": 1e-3}}).optim.weight_decay == 0.0  # the CTC trainer's default


def test_tts_trainer_and_tts_config_name_misspelt_keys():
    from voxtok.recipes.train_tts import read_tts_config

    tts = shipped("tts")["llm_tiny"]
    fails(TTSModule, torch.nn.Linear(2, 2), {"lr": 1e-3, "warmup": 5}, 10, where="tts.optim", key="tts.optim.warmup")
    with pytest.raises(BadConfigError, match="tts.optim.lr is required"):
        TTSModule(torch.nn.Linear(2, 2), {}, 10, where="tts.optim")
    fails(read_tts_config, with_key(tts, "dataa", {}), key="tts.dataa")
    fails(read_tts_config, with_key(tts, "data.batch_sise", 4), key="tts.data.batch_sise")
    fails(read_tts_config, with_key(tts, "frontend.knd", "char"), key="tts.frontend.knd")
    module = TTSModule(torch.nn.Linear(2, 2), {"lr": 1e-3}, 10)
    assert (module.optim.betas, module.optim.weight_decay, module.optim.grad_clip) == ((0.9, 0.98), 0.01, 5.0)


def test_trainer_block_names_misspelt_keys():
    trainer = shipped("trainer")["cpu"]
    fails(check_trainer_config, with_key(trainer, "max_stepz", 3), key="trainer.max_stepz")
    with pytest.raises(BadConfigError, match="trainer.val_every_n_steps must be >= 1"):
        check_trainer_config({**trainer, "val_every_n_steps": None})
    minimal = {"max_steps": 5, "val_every_n_steps": 1, "checkpoint_every_n_steps": 1, "log_every_n_steps": 1}
    filled = check_trainer_config(minimal)
    assert (filled["accelerator"], filled["devices"], filled["precision"], filled["seed"]) == ("cpu", 1, "32-true", 0)


def test_benchmark_config_names_misspelt_keys():
    from voxtok.bench.runner import BenchConfig

    base = {"test_dir": "t", "out_dir": "o"}
    fails(BenchConfig.from_mapping, {**base, "njj": 2}, key="njj")
    fails(BenchConfig.from_mapping, {**base, "probe": {"stepz": 1}}, key="probe.stepz")
    fails(BenchConfig.from_mapping, {**base, "lm_model": {"layerz": 1}}, key="lm_model.layerz")
    assert BenchConfig.from_mapping({**base, "probe": {"asr_steps": 5}}).probe.asr_steps == 5


def test_data_options_name_misspelt_and_missing_keys():
    fails(dataclass_from_dict, ClipDataOptions, {"crop_second": 1.0, "batch_size": 2}, "codec.data",
          key="codec.data.crop_second")
    with pytest.raises(BadConfigError, match="'codec.data' lacks crop_seconds"):
        dataclass_from_dict(ClipDataOptions, {"batch_size": 2}, "codec.data")
    fails(dataclass_from_dict, TranscribedDataOptions, {"batch_size": 2, "max_second": 3}, "codec.data",
          key="codec.data.max_second")
    assert dataclass_from_dict(TTSDataOptions, None, "tts.data") == TTSDataOptions()
    clip = dataclass_from_dict(ClipDataOptions, {"crop_seconds": 1.0, "batch_size": 2}, "codec.data")
    assert (clip.valid_crop_seconds, clip.num_workers, clip.speed_perturb) == (3.0, 0, 0.0)


def test_corpus_options_name_misspelt_keys():
    from voxtok.recipes.prepare_data import make_corpus

    data = OmegaConf.create({**shipped("data")["mini"], "num_speaker": 3})
    fails(make_corpus, data, 1, key="data.num_speaker")


def test_hydra_recipes_refuse_unknown_overrides(monkeypatch, capsys):
    """Hydra composes recipe configs in struct mode: an unknown key on the command line is an error
    (and `+key=value`, Hydra's explicit append, is the only way to add one)."""
    from voxtok.recipes import report

    monkeypatch.setattr(sys, "argv", ["report", "exp_dirr=exp"])
    with pytest.raises(SystemExit) as exit_info:
        report.main()
    assert exit_info.value.code != 0
    assert "exp_dirr" in capsys.readouterr().err


# ----------------------------------------------------------------------------- shipped configs


def test_every_shipped_config_reads_strictly(tmp_path):
    """configs/{codec,tts,trainer,data}/*.yaml and configs/bench.yaml through their strict readers
    (the codecs are built on the meta device: no weights, only the loss names)."""
    from hydra import compose, initialize_config_dir

    from voxtok.recipes.bench import bench_config
    from voxtok.recipes.prepare_data import CORPUS_KEYS
    from voxtok.recipes.train_tts import read_tts_config
    from voxtok.registry import build
    from voxtok.tts.vocoder import MelVocoder

    for name, cfg in shipped("codec").items():
        model = copy.deepcopy(cfg["model"])
        for teacher in (model.get("distill") or {}).values():
            teacher["dim"] = teacher["dim"] or 8  # filled from the teacher stores by the recipe
        with torch.device("meta"):
            codec = build("codec", cfg["name"], model)
        if cfg["name"] == "s3":
            train_asr.CTCModule(codec, cfg, max_steps=1, where="codec")
            dataclass_from_dict(TranscribedDataOptions, cfg["data"], "codec.data")
        else:
            gan_config.read_gan_config(cfg, codec.loss_names, "codec")
            dataclass_from_dict(ClipDataOptions, cfg["data"], "codec.data")
    def hift(model):
        from voxtok.tts.hift import HiFT

        with torch.device("meta"):
            return HiFT.from_config(model)

    readers = {"llm": lambda m: TextToTokenLMConfig.from_dict(m), "flow": flow.merge_config,
               "flowomni": flowomni.merge_config, "mel_vocoder": MelVocoder, "hift": hift}
    for name, cfg in shipped("tts").items():
        if name == "cosyvoice_300m_paper":  # names the three part configs (tests/test_cosyvoice_paper.py)
            continue
        readers[cfg["name"]](cfg["model"])
        if cfg["name"] == "hift":  # inference only so far: no training blocks
            assert set(cfg) == {"name", "model"}
        elif cfg["name"] == "mel_vocoder":
            gan_config.read_gan_config(cfg, MelVocoder.loss_names, "tts")
            dataclass_from_dict(ClipDataOptions, cfg["data"], "tts.data")
        else:
            read_tts_config(cfg)
            read_optim_config(cfg["optim"], TTS_OPTIM_DEFAULTS, "tts.optim")
    for cfg in shipped("trainer").values():
        check_trainer_config(cfg)
    for cfg in shipped("data").values():
        assert set(cfg) <= set(CORPUS_KEYS)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        bench_config(compose("bench", overrides=[f"out_dir={tmp_path}"]))


def test_tiny_tts_configs_build():
    from voxtok.registry import build

    for name in ("llm_tiny", "flow_tiny", "flowomni_tiny", "vocoder_tiny"):
        cfg = shipped("tts")[name]
        model = build("tts", cfg["name"], cfg["model"])
        assert sum(p.numel() for p in model.parameters()) > 0, name


# ----------------------------------------------------------------------------- optimiser builder


def test_optim_config_is_strict_and_normalises_types():
    fails(read_optim_config, {"lr": 1e-3, "beta": [0.9, 0.99]}, {}, "x.optim", key="x.optim.beta")
    cfg = read_optim_config({"lr": "2.0e-3", "betas": [0.8, 0.99], "warmup_steps": "5"}, {"grad_clip": 10}, "x.optim")
    assert (cfg.lr, cfg.betas, cfg.warmup_steps, cfg.grad_clip, cfg.fused) == (2e-3, (0.8, 0.99), 5, 10.0, None)
    with pytest.raises(BadConfigError, match="two numbers"):
        OptimConfig(lr=1e-3, betas=(0.9,))


def test_builder_makes_the_old_adamw_and_schedules():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    cfg = OptimConfig(lr=1e-3, betas=(0.8, 0.9), weight_decay=0.01, fused=False, warmup_steps=3, final_lr_ratio=0.1)
    opt = build_optimizer(net.parameters(), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert {k: opt.defaults[k] for k in ("lr", "betas", "eps", "weight_decay", "fused")} == \
        {"lr": 1e-3, "betas": (0.8, 0.9), "eps": 1e-8, "weight_decay": 0.01, "fused": False}
    sched = build_scheduler(opt, cfg, total_steps=10)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()

    def old_gan_schedule(step, warmup=3, total=10, final=0.1):  # the copy gan_trainer.py had
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))

    assert lrs == [1e-3 * old_gan_schedule(s) for s in range(12)]


@pytest.mark.parametrize("steps", [1, 7, 40, 600])
def test_benchmark_schedule_matches_the_old_fit_loop(steps):
    warm = max(1, steps // 20)
    factor = warmup_cosine(warm, steps, 0.0, decay_during_warmup=True)
    for s in range(steps + 2):  # the old bench/fit.py lambda
        old = min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))
        assert factor(s) == pytest.approx(old, abs=1e-15)
