"""Two-process DDP on CPU (gloo), launched like torchrun (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT).

Each rank trains on its half of every global batch; the averaged gradients must equal the single-process gradients
on the whole batch, and only rank 0 may write the run folder.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from gloo_workers import run_ranks

from mogsim.nets import network_config
from mogsim.errors import InputError
from mogsim.runs import RunFolder, load_checkpoint
from mogsim.training import Budget, DistContext, TrainConfig, Trainer, setup_distributed, train_run

# float64 networks: the gradient comparison below then tests the averaging over ranks, not how float32 convolution
# kernels round a batch of 4 differently from a batch of 8 (about 1 ulp of the largest gradient).
SETUP = """
import torch
from mogsim.nets import network_config
from mogsim.training import Budget, RuntimeOptions, TrainConfig
torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
CFG = TrainConfig(net=network_config("unet-tiny", (3, 8, 8), model_channels=16, channel_mult=(1, 2),
                                     attn_resolutions=(4,)), precond="edm", batch=8, lr=1e-3, lr_warmup_images=16)
DATA = torch.randint(0, 256, (6, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
RUNTIME = RuntimeOptions(progress="none", log_every=1, checkpoint_every=2)
"""

WORKER = SETUP + """
import sys
from pathlib import Path
from mogsim.training import Trainer, cleanup_distributed, setup_distributed, train_run

out = Path(sys.argv[1])
ctx = setup_distributed("cpu")
trainer = Trainer(CFG, DATA, runtime=RUNTIME, ctx=ctx)
trainer.forward_backward(0)
torch.save({n: p.grad for n, p in trainer.net.named_parameters()}, out / f"grads{ctx.rank}.pt")
del trainer
train_run(CFG, DATA, Budget("steps", 3), out / "run", runtime=RUNTIME, ctx=ctx)
cleanup_distributed(ctx)
"""



def test_two_process_gloo_matches_single_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    run_ranks(script, str(tmp_path))

    ns: dict = {}
    default_dtype = torch.get_default_dtype()
    try:
        exec(textwrap.dedent(SETUP), ns)  # the very same config and data, single process
        single = Trainer(ns["CFG"], ns["DATA"], runtime=ns["RUNTIME"])
        single.forward_backward(0)
    finally:
        torch.set_default_dtype(default_dtype)
    g0 = torch.load(tmp_path / "grads0.pt")
    g1 = torch.load(tmp_path / "grads1.pt")
    for name, p in single.net.named_parameters():
        assert p.dtype == torch.float64
        assert torch.equal(g0[name], g1[name]), name  # DDP leaves every rank with the same averaged gradient
        assert torch.allclose(g0[name], p.grad, rtol=1e-5, atol=1e-6), name

    # The run folder: written once (by rank 0), recording the world size; weights close to a 1-process run.
    run = tmp_path / "run"
    record = json.loads((run / "config.json").read_text())
    assert record["runtime"]["world_size"] == 2
    ddp_state = load_checkpoint(RunFolder(run).latest_checkpoint())
    assert ddp_state["step"] == 3 and len(ddp_state["rng"]) == 2
    try:
        torch.set_default_dtype(torch.float64)
        train_run(ns["CFG"], ns["DATA"], Budget("steps", 3), tmp_path / "single", runtime=ns["RUNTIME"])
    finally:
        torch.set_default_dtype(default_dtype)
    one_state = load_checkpoint(RunFolder(tmp_path / "single").latest_checkpoint())
    for name, w in one_state["net"].items():
        assert torch.allclose(ddp_state["net"][name], w, atol=1e-4), name


def test_batch_must_split_evenly_over_processes():
    cfg = TrainConfig(net=network_config("unet-tiny", (3, 8, 8), channel_mult=(1, 2), attn_resolutions=(4,)),
                      batch=9)
    data = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(InputError, match="divisible by the number of processes"):
        Trainer(cfg, data, ctx=DistContext(world_size=2))


def test_single_process_without_torchrun_env(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = setup_distributed("cpu")
    assert ctx.world_size == 1 and ctx.is_main and not ctx.distributed and ctx.device.type == "cpu"
