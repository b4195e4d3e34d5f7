"""Discriminators saved beside a codec checkpoint (voxtok.codecs.gan_checkpoint)."""

from __future__ import annotations

import pytest
import torch
import yaml

from voxtok.codecs.gan_checkpoint import CONFIG, WEIGHTS, load_discriminators, save_discriminators
from voxtok.codecs.modules.discriminators import build_discriminators
from voxtok.errors import BadConfigError

BLOCK = {"names": ["mpd", "mrd"],
         "options": {"mpd": {"periods": (2, 3), "channels": 2, "max_channels": 8, "num_embeddings": 4},
                     "mrd": {"resolutions": ((256, 64, 256),), "channels": 4, "layers": "vocos"}}}


def built():
    torch.manual_seed(0)
    return build_discriminators(BLOCK["names"], **BLOCK["options"])


def test_round_trip_rebuilds_the_same_discriminators(tmp_path):
    disc = built()
    save_discriminators(tmp_path, BLOCK, disc)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG, WEIGHTS])  # no temp files left
    config, state = load_discriminators(tmp_path)
    assert config["names"] == BLOCK["names"] and config["options"]["mpd"]["periods"] == [2, 3]
    again = build_discriminators(config["names"], **config["options"])
    again.load_state_dict(state)
    wav = torch.randn(1, 1, 2000)
    assert torch.equal(disc(wav, 1)[0][0], again(wav, 1)[0][0])
    # A state_dict saves the same as the module.
    save_discriminators(tmp_path, BLOCK, disc.state_dict())
    assert load_discriminators(tmp_path)[1].keys() == state.keys()


def test_a_folder_without_discriminators_gives_none(tmp_path):
    assert load_discriminators(tmp_path) is None


def test_half_written_stale_or_foreign_pairs_are_refused(tmp_path):
    save_discriminators(tmp_path, BLOCK, built())
    (tmp_path / CONFIG).unlink()
    with pytest.raises(BadConfigError, match=f"has {WEIGHTS} without {CONFIG}"):
        load_discriminators(tmp_path)
    save_discriminators(tmp_path, BLOCK, built())
    other = tmp_path / "other"
    other.mkdir()
    save_discriminators(other, BLOCK, {k: v + 1 for k, v in built().state_dict().items()})
    (other / WEIGHTS).replace(tmp_path / WEIGHTS)
    with pytest.raises(BadConfigError, match="weights hash differs"):
        load_discriminators(tmp_path)
    (tmp_path / CONFIG).write_text(yaml.safe_dump({"something": 1}))
    with pytest.raises(BadConfigError, match="no 'discriminators' block"):
        load_discriminators(tmp_path)


def test_bad_config_writes_nothing(tmp_path):
    with pytest.raises(BadConfigError, match="discriminators.options.mpd.chanels"):
        save_discriminators(tmp_path, {"names": ["mpd"], "options": {"mpd": {"chanels": 2}}}, built())
    with pytest.raises(BadConfigError, match="no such checkpoint folder"):
        save_discriminators(tmp_path / "missing", BLOCK, built())
    assert list(tmp_path.iterdir()) == []
