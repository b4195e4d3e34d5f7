"""Tests for voxtok.codecs.modules.quantize: VQ (EMA, k-means, dead codes, masks, DDP), RVQ, FSQ."""

from __future__ import annotations

import datetime
import math
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from voxtok.codecs.modules.quantize import (
    FSQ,
    QuantizerOutput,
    ResidualVQ,
    VectorQuantizer,
    build_quantizer,
)
from voxtok.errors import BadConfigError, VoxTokError

DIM = 8


def clustered(n_clusters: int = 4, batch: int = 4, frames: int = 64, spread: float = 0.05, seed: int = 0,
              centers: torch.Tensor | None = None):
    """Toy latents around well separated centers: (x [B, DIM, T], centers [C, DIM])."""
    g = torch.Generator().manual_seed(seed)
    if centers is None:
        centers = torch.randn(n_clusters, DIM, generator=g) * 3
    labels = torch.randint(centers.shape[0], (batch, frames), generator=g)
    x = centers[labels] + spread * torch.randn(batch, frames, DIM, generator=g)
    return x.transpose(1, 2).contiguous(), centers


def covered_clusters(codebook: torch.Tensor, centers: torch.Tensor, radius: float = 0.5) -> int:
    """How many centers have a code within `radius`."""
    return int((torch.cdist(centers, codebook).min(dim=1).values < radius).sum())


def make(kind: str):
    if kind == "vq":
        return VectorQuantizer(DIM, 32)
    if kind == "vq_proj":
        return VectorQuantizer(DIM, 32, codebook_dim=4)
    if kind == "vq_grad":
        return VectorQuantizer(DIM, 32, ema=False)
    if kind == "rvq":
        return ResidualVQ(3, DIM, 32)
    if kind == "fsq":
        return FSQ(levels=(8, 5, 5, 5), dim=DIM)
    raise AssertionError(kind)


KINDS = ["vq", "vq_proj", "vq_grad", "rvq", "fsq"]


@pytest.mark.parametrize("kind", KINDS)
def test_codes_shape_dtype_range(kind):
    torch.manual_seed(0)
    q = make(kind).train()
    x = torch.randn(2, DIM, 30)
    out = q(x)
    assert isinstance(out, QuantizerOutput)
    assert out.quantized.shape == x.shape
    assert out.codes.shape == (2, q.n_q, 30) and out.codes.dtype == torch.int64
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < q.codebook_size
    assert len(out.layer_outputs) == q.n_q and all(o.shape == x.shape for o in out.layer_outputs)
    assert out.perplexity.shape == (q.n_q,) and out.batch_usage.shape == (q.n_q,)
    assert out.commit_loss.dim() == 0 and out.codebook_loss.dim() == 0 and out.loss.dim() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_decode_of_encode_equals_forward_in_eval(kind):
    torch.manual_seed(0)
    q = make(kind).train()
    for _ in range(3):
        q(torch.randn(2, DIM, 40))
    q.eval()
    x = torch.randn(3, DIM, 25)
    out = q(x)
    codes = q.encode(x)
    assert codes.shape == (3, q.n_q, 25)
    assert torch.equal(codes, out.codes)
    assert torch.equal(q.decode(codes), out.quantized)


@pytest.mark.parametrize("kind", KINDS)
def test_straight_through_gradient_reaches_input(kind):
    torch.manual_seed(0)
    q = make(kind).train()
    x = torch.randn(2, DIM, 20, requires_grad=True)
    q(x).quantized.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if kind in ("vq", "vq_grad", "rvq"):  # no projections: the estimator is exactly the identity
        assert torch.allclose(x.grad, torch.ones_like(x.grad))


def test_learnable_codebook_gets_codebook_loss_gradient():
    torch.manual_seed(0)
    q = VectorQuantizer(DIM, 16, ema=False).train()
    out = q(torch.randn(2, DIM, 20))
    assert out.codebook_loss > 0
    out.loss.backward()
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0


def test_ema_update_converges_to_data_mean():
    torch.manual_seed(0)
    q = VectorQuantizer(DIM, 1, decay=0.5, kmeans_init=False, dead_code_threshold=0.0).train()
    mean = torch.arange(DIM, dtype=torch.float32)
    for _ in range(30):
        q(mean[None, :, None] + 0.01 * torch.randn(4, DIM, 32))
    assert torch.allclose(q.codebook[0], mean, atol=0.02)


def test_ema_codebook_learns_clusters_and_uses_them_all():
    torch.manual_seed(0)
    q = VectorQuantizer(DIM, 32, kmeans_init=False).train()
    _, centers = clustered()
    losses = []
    for step in range(40):
        x, _ = clustered(centers=centers, seed=step + 1)
        losses.append(float(q(x).commit_loss))
    assert losses[-1] < 0.05 * losses[0]
    assert covered_clusters(q.codebook, centers) == len(centers)
    q.eval()
    codes = q.encode(centers.t()[None])[0, 0]
    assert len(set(codes.tolist())) == len(centers)  # every cluster has a code of its own


def test_kmeans_init_places_codes_near_clusters():
    torch.manual_seed(0)
    q = VectorQuantizer(DIM, 16, dead_code_threshold=0.0).train()
    assert not bool(q.initialized)
    x, centers = clustered()
    q(x)
    assert bool(q.initialized)
    assert covered_clusters(q.codebook, centers, radius=0.3) == len(centers)
    # Every code sits on the data (a cluster mean or a seed frame), none is left at random.
    assert (torch.cdist(q.codebook, centers).min(dim=1).values < 0.5).all()
    # Sizes after init match the batch: frame counts of the global batch.
    assert math.isclose(float(q.ema_cluster_size.sum()), x.shape[0] * x.shape[2], rel_tol=1e-4)


def test_dead_codes_are_reseeded_from_batch():
    _, centers = clustered()

    def run(threshold: float):
        torch.manual_seed(0)
        q = VectorQuantizer(DIM, 32, kmeans_init=False, dead_code_threshold=threshold).train()
        far = torch.full((32, DIM), 100.0)
        far[0] = centers[0]
        counts = torch.full((32,), 3.0)
        counts[0] = 256.0
        q.init_codebook(far, counts)
        first = float(q(clustered(centers=centers, seed=1)[0]).batch_usage)
        for step in range(60):
            last = float(q(clustered(centers=centers, seed=step + 2)[0]).batch_usage)
        return q, first, last

    stuck, first, last = run(0.0)
    assert first == last == 1 / 32  # nothing revives the far codes
    assert covered_clusters(stuck.codebook, centers) <= 1
    revived, first, last = run(2.0)
    assert first == 1 / 32 and last >= 4 / 32
    assert covered_clusters(revived.codebook, centers) == len(centers)
    assert (revived.codebook < 50).all()  # no code was left far away


@pytest.mark.parametrize("kind", ["vq", "rvq"])
def test_padded_frames_do_not_change_statistics(kind):
    x, _ = clustered(batch=2, frames=40)
    lengths = [40, 28]
    padded = x.clone()
    padded[1, :, 28:] = 1e3 * torch.randn(DIM, 12)  # garbage that would wreck any statistic
    mask = torch.arange(40)[None] < torch.tensor(lengths)[:, None]
    unpadded = torch.cat([x[0, :, :40], x[1, :, :28]], dim=1)[None]  # same valid frames, same order

    def run(inputs, m):
        torch.manual_seed(0)
        q = make(kind).train()
        outs = [q(inputs, mask=m) for _ in range(3)]
        return q, outs

    qa, outs_a = run(padded, mask)
    qb, outs_b = run(unpadded, None)
    state_a, state_b = qa.state_dict(), qb.state_dict()
    for name in state_a:
        assert torch.allclose(state_a[name].float(), state_b[name].float(), atol=1e-5), name
    for out_a, out_b in zip(outs_a, outs_b):
        assert torch.allclose(out_a.commit_loss, out_b.commit_loss, atol=1e-6)
        assert torch.allclose(out_a.perplexity, out_b.perplexity, atol=1e-5)
    assert torch.equal(qa.usage(), qb.usage())


def test_rvq_error_falls_with_more_layers():
    torch.manual_seed(0)
    rvq = ResidualVQ(4, DIM, 64).train()
    for _ in range(3):
        rvq(torch.randn(8, DIM, 50))
    rvq.eval()
    x = torch.randn(8, DIM, 50)
    errors = [float((rvq(x, n_q=k).quantized - x).pow(2).mean()) for k in range(1, 5)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors


def test_rvq_decodes_any_prefix_of_layers():
    torch.manual_seed(0)
    rvq = ResidualVQ(4, DIM, 32).train()
    rvq(torch.randn(4, DIM, 30))
    rvq.eval()
    x = torch.randn(2, DIM, 30)
    codes = rvq.encode(x)
    assert codes.shape == (2, 4, 30)
    for k in range(1, 5):
        out = rvq(x, n_q=k)
        assert torch.equal(out.codes, codes[:, :k])
        assert torch.equal(rvq.decode(codes[:, :k]), out.quantized)
        assert torch.equal(rvq.encode(x, n_q=k), codes[:, :k])
    with pytest.raises(VoxTokError):
        rvq.decode(torch.zeros(2, 5, 30, dtype=torch.long))


def test_quantizer_dropout_draws_layer_counts_in_training_only():
    torch.manual_seed(0)
    rvq = ResidualVQ(4, DIM, 16, quantizer_dropout=True).train()
    counts = {rvq(torch.randn(1, DIM, 10)).codes.shape[1] for _ in range(30)}
    assert len(counts) > 1 and counts <= {1, 2, 3, 4}
    rvq.eval()
    assert rvq(torch.randn(1, DIM, 10)).codes.shape[1] == 4


def test_fsq_codebook_size_and_code_round_trip():
    fsq = FSQ(levels=(8, 5, 5, 5), dim=DIM)
    assert fsq.codebook_size == 1000
    assert FSQ(levels=(3,) * 8, dim=512).codebook_size == 6561
    all_codes = torch.arange(1000)[None]  # [1, 1000]
    grid = fsq.codes_to_grid(all_codes)
    assert grid.shape == (1, 4, 1000) and grid.abs().max() <= 1
    assert torch.equal(fsq.grid_to_codes(grid), all_codes)
    # Every code is reachable: extreme inputs land on the grid's corners, random ones inside.
    torch.manual_seed(0)
    out = fsq(10 * torch.randn(4, DIM, 500))
    assert out.codes.min() >= 0 and out.codes.max() < 1000
    assert float(out.commit_loss) == 0.0
    assert out.batch_usage.item() > 0.2


def test_usage_counts_and_reset():
    torch.manual_seed(0)
    for q in (VectorQuantizer(DIM, 16), ResidualVQ(2, DIM, 16), FSQ((4, 4), dim=DIM)):
        q.train()
        q(torch.randn(4, DIM, 50))
        assert (q.usage() > 0).all() and q.usage().shape == (q.n_q,)
        q.reset_usage()
        assert (q.usage() == 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_batched_and_unbatched_codes_are_identical(kind):
    torch.manual_seed(0)
    q = make(kind).train()
    q(torch.randn(4, DIM, 40))
    q.eval()
    lengths = [33, 20, 27]
    x = torch.randn(3, DIM, 33)
    mask = torch.arange(33)[None] < torch.tensor(lengths)[:, None]
    batched = q.encode(x, mask=mask)
    batched_forward = q(x, mask=mask)
    for i, length in enumerate(lengths):
        alone = q.encode(x[i : i + 1, :, :length])
        assert torch.equal(batched[i : i + 1, :, :length], alone)
        assert torch.equal(batched_forward.codes[i : i + 1, :, :length], alone)
        decoded = q.decode(alone)
        assert torch.allclose(batched_forward.quantized[i : i + 1, :, :length], decoded, atol=1e-6)


def test_build_quantizer_and_bad_input():
    assert isinstance(build_quantizer("vq", dim=DIM, codebook_size=8), VectorQuantizer)
    assert isinstance(build_quantizer("rvq", n_q=2, dim=DIM, codebook_size=8), ResidualVQ)
    assert isinstance(build_quantizer("fsq", levels=(5, 5), dim=DIM), FSQ)
    with pytest.raises(BadConfigError):
        build_quantizer("pq", dim=DIM)
    with pytest.raises(BadConfigError):
        build_quantizer("vq", dim=DIM, codebook_size=8, codebok_dim=4)
    with pytest.raises(VoxTokError):
        VectorQuantizer(DIM, 8).decode(torch.tensor([[[0, 8]]]))
    with pytest.raises(VoxTokError):
        FSQ((4, 4)).decode(torch.tensor([[[-1, 3]]]))


@pytest.mark.parametrize("kind", KINDS)
def test_every_quantizer_takes_and_gives_codes_b_q_t(kind):
    """One shape contract: encode -> [B, Q, T] (Q = 1 for VQ and FSQ), decode takes [B, Q, T]
    and nothing else, and n_q means the same for every kind."""
    torch.manual_seed(0)
    q = make(kind).eval()
    x = torch.randn(2, DIM, 9)
    codes = q.encode(x)
    assert codes.shape == (2, q.n_q, 9) and codes.dtype == torch.int64
    assert torch.equal(q.encode(x, n_q=1), codes[:, :1])
    assert q(x, n_q=1).codes.shape == (2, 1, 9)
    assert q.decode(codes[:, :1]).shape == x.shape
    with pytest.raises(VoxTokError, match=r"\[B, "):
        q.decode(codes[:, 0])  # [B, T]: the old one-codebook layout is refused, not guessed
    if q.n_q == 1:
        with pytest.raises(BadConfigError, match="n_q"):
            q.encode(x, n_q=2)


# ---------------------------------------------------------------------------------------------
# DDP: two CPU processes over gloo


def _ddp_steps(world: int = 2, steps: int = 5):
    """Per step: a global batch [world*2, DIM, T] and its mask; each rank gets 2 rows."""
    _, centers = clustered(n_clusters=6, seed=123)
    batches = []
    for step in range(steps):
        x, _ = clustered(centers=centers, batch=2 * world, frames=24, seed=200 + step, spread=0.3)
        mask = torch.ones(2 * world, 24, dtype=torch.bool)
        mask[-1, 15:] = False  # the last rank has padding
        batches.append((x, mask))
    return batches


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    # A short collective timeout turns a rank mismatch (a deadlock) into an error.
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=30))
    torch.set_num_threads(1)
    try:
        rows = slice(2 * rank, 2 * rank + 2)
        batches = _ddp_steps(world)
        # 1) Deterministic EMA path: must equal one process fed the whole global batch.
        torch.manual_seed(0)
        vq = VectorQuantizer(DIM, 16, kmeans_init=False, dead_code_threshold=0.0).train()
        for x, mask in batches:
            vq(x[rows], mask=mask[rows])
        # 2) Random paths (k-means seeds, dead-code re-seeding, dropout draws) with a different
        #    RNG on every rank: only the broadcasts keep the ranks identical.
        torch.manual_seed(1000 + rank)
        rvq = ResidualVQ(3, DIM, 16, quantizer_dropout=True).train()
        used = []
        for x, mask in batches:
            used.append(rvq(x[rows], mask=mask[rows]).codes.shape[1])
        rvq(batches[0][0][rows], n_q=3)  # make sure every layer went through k-means init
        torch.save({"vq": vq.state_dict(), "rvq": rvq.state_dict(), "used": used},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_codebooks_stay_identical_and_match_single_process(tmp_path):
    world = 2
    context = mp.spawn(_ddp_worker, args=(world, str(tmp_path / "store"), str(tmp_path)), nprocs=world,
                       join=False)
    deadline = time.monotonic() + 90
    while not context.join(timeout=1):  # join() raises if a worker failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("DDP workers hung: ranks ran different collectives")
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]

    for key in ("vq", "rvq"):
        for name, value in results[0][key].items():
            assert torch.equal(value, results[1][key][name]), f"{key}.{name} differs across ranks"
    assert results[0]["used"] == results[1]["used"]
    assert all(bool(v) for k, v in results[0]["rvq"].items() if k.endswith("initialized"))

    torch.manual_seed(0)
    reference = VectorQuantizer(DIM, 16, kmeans_init=False, dead_code_threshold=0.0).train()
    for x, mask in _ddp_steps(world):
        reference(x, mask=mask)
    for name, value in reference.state_dict().items():
        assert torch.allclose(results[0]["vq"][name].float(), value.float(), atol=1e-5), name
