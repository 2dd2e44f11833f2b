"""Two gloo processes on loopback: DDP's averaged gradients equal the one-process gradient."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import dsm_core as dc
from dsm_core import distributed
from dsm_core.config import LossConfig
from dsm_core.losses import DualScoreLoss

REPO = Path(__file__).resolve().parent.parent
WORLD = 2
BATCH = 6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same full batch (x, t, z) in every process (float64: only summation order differs)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(BATCH, 1, 16, 16, generator=generator, dtype=torch.float64)
    t = torch.logspace(-5, 3, BATCH, dtype=torch.float64)
    z = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return x, t, z


def model() -> dc.EnergyModel:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return dc.build_energy_model("tiny", time_term="gaussian").double()


def loss_and_backward(module, x, t, z) -> None:
    """Dual score matching plus the heat term at the same images (its third-order graph goes
    through a plain-layer twin of the network sharing the weights DDP synchronises)."""
    y = x + t.sqrt().view(-1, 1, 1, 1) * z
    probes = torch.stack([torch.sign(z), torch.sign(z.flip(-1))])  # (2, B, ...) +-1, per image
    total, _, _, heat = module(x, y, t, LossConfig(), (y, t, probes))
    (total.mean() + heat.mean()).backward()


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
    )
    torch.set_num_threads(1)
    info = distributed.init_process_group(torch.device("cpu"))
    assert (info.rank, info.world_size) == (rank, WORLD)
    net = model()
    module = distributed.wrap_ddp(DualScoreLoss(net), torch.device("cpu"))
    assert isinstance(module, torch.nn.parallel.DistributedDataParallel)
    x, t, z = batch()
    shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)  # this rank's images
    loss_and_backward(module, x[shard], t[shard], z[shard])
    grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    missing = sorted(name for name, p in net.named_parameters() if p.grad is None)
    # A second step must not trip DDP's check for parameters that got no gradient.
    net.zero_grad()
    loss_and_backward(module, x[shard], t[shard], z[shard])
    if rank == 0:
        torch.save(grads, Path(out_dir) / "grads.pt")
        (Path(out_dir) / "missing.json").write_text(json.dumps(missing))
    distributed.destroy_process_group()
    # Leave without interpreter shutdown. torch 2.13 stashes a Python object in the thread-local
    # state of every backward, and DDP's gloo all-reduce works launched there carry a copy; a gloo
    # worker thread that drops the last one while Python is finalising aborts the process
    # ("terminate called without an active exception"; 5 of 36 runs of tests/app + this file).
    # The training CLI is not exposed: seconds of checkpointing and evaluation separate its last
    # backward from its exit.
    os._exit(0)


def test_two_gloo_ranks_average_to_the_full_batch_gradient(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    assert json.loads((tmp_path / "missing.json").read_text()) == []
    ddp_grads = torch.load(tmp_path / "grads.pt", weights_only=True)

    net = model()
    loss_and_backward(DualScoreLoss(net), *batch())
    names = [name for name, _ in net.named_parameters()]
    assert sorted(ddp_grads) == sorted(names)
    for name, p in net.named_parameters():
        torch.testing.assert_close(
            ddp_grads[name], p.grad, rtol=1e-9, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_single_process_helpers():
    info = distributed.get_info()
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
    value = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_mean(value) is value
    assert distributed.any_process(True, torch.device("cpu"))
    assert distributed.resolve_device("cpu").type == "cpu"


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train(tmp_path):
    """The whole loop under torchrun with two gloo processes: rank 0 writes, the batch is split."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args += [str(REPO / "train" / "train.py"), "--config", "tiny_cpu", "--out", str(run)]
    args += ["--threads", "1", "--no-progress", "--quiet", "num_steps=6", "batch_size=8"]
    args += [
        "checkpoint_every_steps=3",
        "eval_every_steps=6",
        "eval_num_images=8",
        "log_every_steps=1",
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # one writer
    last = [r for r in records if r["kind"] == "train"][-1]
    assert (last["epoch"], last["data_position"]) == (0, 6 * 8)  # the total batch, not per rank
    assert dc.load_model(run / "model").metadata["steps"] == 6
