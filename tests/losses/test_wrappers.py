"""CrossBatchMemory equals an explicit reference set; the distributed gather equals one process."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rankopt.losses import HAP, CrossBatchMemory, DistributedLoss, FastAP, NormSoftmax, SmoothAP, SupAP


def batches(n_batches=4, b=8, d=6, levels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
        fine = torch.randint(0, 5, (b,), generator=g)
        out.append((x, fine if levels == 1 else torch.stack([fine, fine // 2], 1)))
    return out


@pytest.mark.parametrize("loss_cls,levels", [(SupAP, 1), (SmoothAP, 1), (FastAP, 1), (HAP, 2)])
def test_memory_equals_explicit_reference(loss_cls, levels):
    size = 20
    mem = CrossBatchMemory(loss_cls(), size)
    seen_x, seen_y = [], []
    for x, y in batches(levels=levels):
        seen_x.append(x)
        seen_y.append(y)
        ref_x, ref_y = torch.cat(seen_x)[-size:], torch.cat(seen_y)[-size:]  # last `size` items, FIFO
        xa = x.clone().requires_grad_()
        xb = x.clone().requires_grad_()
        got = mem(xa, y)
        want = loss_cls()(xb, y, ref_x, ref_y)
        got.backward()
        want.backward()
        assert float(got) == pytest.approx(float(want), abs=1e-6)  # ring order differs: same set
        torch.testing.assert_close(xa.grad, xb.grad, atol=1e-6, rtol=1e-5)


def test_memory_start_step_batch_weight_and_errors():
    (x, y), (x2, y2) = batches(2)
    mem = CrossBatchMemory(SupAP(), 16, start_step=1, batch_weight=0.5)
    assert float(mem(x, y)) == pytest.approx(float(SupAP()(x, y)))  # before start_step: in-batch
    want = SupAP()(x2, y2, torch.cat([x, x2]), torch.cat([y, y2])) + 0.5 * SupAP()(x2, y2)
    assert float(mem(x2, y2)) == pytest.approx(float(want), abs=1e-6)
    with pytest.raises(ValueError, match="smaller than the batch"):
        CrossBatchMemory(SupAP(), 4)(x, y)
    with pytest.raises(ValueError, match="does not match the memory"):
        mem(torch.randn(3, 2), torch.zeros(3, dtype=torch.int64))


def test_memory_state_dict_round_trip():
    mem = CrossBatchMemory(SupAP(), 12)
    for x, y in batches(2):
        mem(x, y)
    fresh = CrossBatchMemory(SupAP(), 12)
    fresh.load_state_dict(mem.state_dict())
    assert torch.equal(fresh.embeddings, mem.embeddings) and int(fresh.filled) == 12


def _worker(rank, world, init_file, xs, ys, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.Linear(xs.shape[1], 4)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    loss = DistributedLoss(SupAP())
    part = slice(rank * len(xs) // world, (rank + 1) * len(xs) // world)
    emb = torch.nn.functional.normalize(ddp(xs[part]), dim=1)
    value = loss(emb, ys[part])
    value.backward()
    if rank == 0:
        torch.save({"loss": value.detach(), "grad": model.weight.grad.clone()}, out_file)
    dist.barrier()
    # gloo's teardown can abort ("terminate called without an active exception"): skip it
    os._exit(0)


def test_distributed_gradients_equal_single_process():
    g = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(16, 5, generator=g), torch.randint(0, 4, (16,), generator=g)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.pt")
        mp.spawn(_worker, args=(2, os.path.join(tmp, "init"), xs, ys, out), nprocs=2, join=True)
        result = torch.load(out)
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 4)
    value = SupAP()(torch.nn.functional.normalize(model(xs), dim=1), ys)
    value.backward()
    assert float(result["loss"]) == pytest.approx(float(value), abs=1e-6)
    torch.testing.assert_close(result["grad"], model.weight.grad, atol=1e-6, rtol=1e-5)


def test_normsoftmax_proxies_and_errors():
    loss = NormSoftmax(5, 6)
    ((x, y),) = batches(1)
    v = loss(x, y)
    assert v.requires_grad and loss.proxy_parameters()[0].shape == (5, 6)
    with pytest.raises(ValueError, match="out of range"):
        loss(x, y + 10)


def test_memory_keeps_float64():
    """The memory used to be float32 whatever the input: float64 embeddings then failed."""
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(8, 6, generator=g, dtype=torch.float64), dim=1)
    y = torch.arange(8) % 3
    mem = CrossBatchMemory(SupAP(), 16)
    value = mem(x, y)
    assert value.dtype == torch.float64 and mem.embeddings.dtype == torch.float64
    assert torch.equal(value, SupAP()(x, y, x, y))


def test_unique_memory_holds_the_latest_embedding_of_each_item():
    """ROADMAP's memory: one slot per dataset item; a second batch overwrites the slots of its items."""
    g = torch.Generator().manual_seed(2)
    emb = lambda n: torch.nn.functional.normalize(torch.randn(n, 5, generator=g), dim=1)
    first, second = emb(4), emb(4)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    mem = CrossBatchMemory(SupAP(), size=6, unique=True)
    mem(first, labels[:4], indices=torch.arange(4))
    value = mem(second, labels[2:6], indices=torch.arange(2, 6))
    reference = torch.cat([first[:2], second])  # items 0, 1 from the first batch; 2..5 their latest
    assert torch.equal(value, SupAP()(second, labels[2:6], reference, labels))
    with pytest.raises(ValueError, match="needs the batch's dataset indices"):
        mem(second, labels[2:6])
    with pytest.raises(ValueError, match=r"indices must be 4 dataset indices in \[0, 6\)"):
        mem(second, labels[2:6], indices=torch.arange(3, 7))


def test_hrank_step_without_smooth_hrank_is_refused():
    from rankopt.losses.steps import SmoothHRankStep

    with pytest.raises(ValueError, match="smooth_hrank=True"):
        HAP(hrank_step=SmoothHRankStep())
    assert HAP(smooth_hrank=True, hrank_step=SmoothHRankStep()).smooth_hrank
