"""Sharded array stores: round trip, streaming order, resume after a kill, shape checks."""

import numpy as np
import pytest

from voxtok.data.shards import BadShardError, ShardStore, ShardWriter
from voxtok.errors import BadDataDirError


def test_round_trip_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"utt{i:03d}": rng.integers(0, 4096, size=(2, 5 + i)) for i in range(7)}
    with ShardWriter(tmp_path, {"codec": "x"}, dtype="int16", shard_items=3) as w:
        for k, a in arrays.items():
            w.add(k, a)
    store = ShardStore(tmp_path)
    assert len(list(tmp_path.glob("*.index.tsv"))) == 3
    assert store.keys() == list(arrays) and store.meta["codec"] == "x"
    for k, a in arrays.items():
        assert store.shape(k) == a.shape and np.array_equal(store[k], a)
    assert [k for k, _ in store.items()] == list(arrays)


def test_killed_writer_keeps_complete_shards_and_resumes(tmp_path):
    w = ShardWriter(tmp_path, {}, dtype="int16", shard_items=2)
    for i in range(5):
        w.add(f"u{i}", np.full((1, 3), i))
    # no close(): the last, incomplete shard has no index, as after a kill
    assert ShardStore(tmp_path).keys() == ["u0", "u1", "u2", "u3"]
    w2 = ShardWriter(tmp_path, {}, dtype="int16", shard_items=2)
    assert "u3" in w2 and "u4" not in w2
    w2.add("u4", np.full((1, 3), 4))
    w2.close()
    store = ShardStore(tmp_path)
    assert sorted(store.keys()) == ["u0", "u1", "u2", "u3", "u4"] and store["u4"][0, 0] == 4


def test_shape_and_settings_are_checked(tmp_path):
    w = ShardWriter(tmp_path / "f", {"dim": 4}, dtype="float32", expect_ndim=2)
    with pytest.raises(BadShardError, match="expected 2 dims"):
        w.add("bad", np.zeros((1, 7, 4)))  # a leading singleton must not sneak in
    w.close()
    with pytest.raises(BadShardError, match="different settings"):
        ShardWriter(tmp_path / "f", {"dim": 5}, dtype="float32")
    with pytest.raises(BadDataDirError):
        ShardStore(tmp_path / "nothing")
    with pytest.raises(BadShardError, match="not in the store"):
        ShardStore(tmp_path / "f")["missing"]
