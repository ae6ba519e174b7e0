"""The trainer's fast step (issue 11): several UNets as members, the after_optimizer_step hook, precision, how a
launch chooses to execute (compile, CUDA graph) and the state snapshots that keep that choice from changing the
trajectory. GPU-only behaviour (capture, replay, streams, fallback) is tested at the end; those tests skip on CPUs."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

import mogsim.training.loop as loop
from mogsim.errors import InputError
from mogsim.nets import MemberList, build_from_config, network_config
from mogsim.runs import RunFolder, load_checkpoint
from mogsim.training import (Budget, DistContext, RuntimeOptions, TrainConfig, Trainer, load_trained_denoiser,
                             train_run)
from mogsim.training.execution import COMPILE_AFTER_S, Execution, compile_choice, graph_choice
from members import trainers_alone

SHAPE = (3, 8, 8)
QUIET = RuntimeOptions(progress="none", log_every=2, checkpoint_every=0)
CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def tiny_net(members: int = 1, **kw) -> dict:
    kw = {"channel_mult": (1, 2), "attn_resolutions": (4,), "model_channels": 8, **kw}
    return network_config("unet-tiny", SHAPE, members=members, **kw)


def config(members: int = 1, **kw) -> TrainConfig:
    base = dict(net=tiny_net(members), precond="edm", batch=4, lr=3e-3, lr_warmup_images=8, ema_halflife_images=16,
                seed=5)
    base.update(kw)
    return TrainConfig(**base)


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# --- several UNets as the members of one model ----------------------------------------------------------------------

def test_registry_builds_a_member_list_for_unet_members():
    net = build_from_config(tiny_net(3))
    assert isinstance(net, MemberList) and net.members == 3 and net.config["members"] == 3
    assert not isinstance(build_from_config(tiny_net(1)), MemberList)
    x, c = torch.randn(3, 2, *SHAPE), torch.rand(3, 2)
    out = net(x, c)
    for m in range(3):
        torch.testing.assert_close(net.member(m)(x[m], c[m]), out[m], rtol=0, atol=0)
    with pytest.raises(InputError, match="members"):
        net(torch.randn(2, 2, *SHAPE), torch.rand(2, 2))
    with pytest.raises(InputError, match="members"):
        build_from_config({**tiny_net(1), "kwargs": {**tiny_net(1)["kwargs"], "members": 0}})


def test_unet_members_train_exactly_as_models_trained_alone():
    """An M-member UNet Trainer equals M one-member Trainers started from the same weights and fed the same rows of
    every step's draws: the same losses, gradient norms, weights, EMA and Adam moments, bitwise on the CPU (each
    member is its own module, backpropagated on its own; Adam and the EMA are element-wise)."""
    sets = [images(5, 0), images(7, 1), images(6, 2)]
    both = Trainer(config(3, sigma_data=(0.5, 0.8, 1.2), grad_clip=0.05), sets, runtime=QUIET)
    alone = trainers_alone(both, [config(1, sigma_data=(sd,), grad_clip=0.05) for sd in (0.5, 0.8, 1.2)], sets, QUIET)
    for step in range(6):
        loss_both, norm_both = both.train_step(step)
        for m, one in enumerate(alone):
            loss, norm = one.train_step(step)
            assert torch.equal(loss_both[m:m + 1], loss) and torch.equal(norm_both[m:m + 1], norm)
    assert float(norm_both.max()) > 0.05  # clipping was active for some member
    for m, one in enumerate(alone):
        for a, b in zip(one.net.parameters(), both.net.member(m).parameters()):
            assert torch.equal(a, b)
        for a, b in zip(one.ema.module.parameters(), both.ema.module.member(m).parameters()):
            assert torch.equal(a, b)
    n = len(list(alone[0].net.parameters()))
    for m, one in enumerate(alone):
        for a, b in zip(one.optimizer.exp_avg_sq, both.optimizer.exp_avg_sq[m * n:(m + 1) * n]):
            assert torch.equal(a, b)


def test_unet_members_run_load_back_and_resume(tmp_path):
    sets = [images(5, 0), images(6, 1)]
    cfg = config(2)
    trainer = Trainer(cfg, sets, runtime=QUIET)
    trainer.fit(4, tmp_path)
    den = load_trained_denoiser(tmp_path)
    assert isinstance(den.net, MemberList) and den.members == 2
    x = torch.randn(2, *SHAPE)
    expected = trainer.ema_denoiser().member(1)(x, torch.tensor([0.3, 2.0]))
    torch.testing.assert_close(den.member(1)(x, torch.tensor([0.3, 2.0])), expected, rtol=0, atol=0)
    resumed = Trainer(cfg, sets, runtime=QUIET)
    resumed.resume(RunFolder(tmp_path).latest_checkpoint())
    resumed.fit(6)
    trainer.fit(6)
    for a, b in zip(trainer.net.parameters(), resumed.net.parameters()):
        assert torch.equal(a, b)


# --- the after_optimizer_step hook -----------------------------------------------------------------------------------

class Retracted(nn.Module):
    """A toy net F(x) = x W with W kept orthonormal by a QR retraction after every optimizer step; ``calls`` counts
    the hook's calls (a buffer, so the EMA copies it after each update)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linalg.qr(torch.randn(dim, dim))[0])
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) @ self.w).reshape(x.shape) * (1 + 0 * noise_labels.reshape(-1, 1, 1, 1))

    def after_optimizer_step(self) -> None:
        self.w.copy_(torch.linalg.qr(self.w)[0])
        self.calls.add_(1)


@pytest.mark.parametrize("members", [1, 2])
def test_after_optimizer_step_runs_after_adam_and_before_the_ema(monkeypatch, members):
    dim = 3 * 8 * 8
    nets = [Retracted(dim) for _ in range(members)]
    monkeypatch.setattr(loop, "build_from_config", lambda cfg: nets[0] if members == 1 else MemberList(nets))
    trainer = Trainer(config(members, precond="identity", lr=0.05), [images(4, m) for m in range(members)],
                      runtime=QUIET)
    trainer.fit(5)
    for m in range(members):
        net, ema = trainer.net.member(m) if members > 1 else trainer.net, trainer.ema.module
        ema = ema.member(m) if members > 1 else ema
        assert int(net.calls) == 5 and int(ema.calls) == 5  # the EMA copied the buffer after the hook ran
        eye = torch.eye(dim)
        torch.testing.assert_close(net.w.detach().T @ net.w.detach(), eye, atol=1e-5, rtol=0)


# --- precision, execution choice, records ------------------------------------------------------------------------------

def test_precision_replaces_the_bf16_and_tf32_flags():
    assert config().precision == "fp32"
    with pytest.raises(InputError, match="precision"):
        config(precision="fp16")
    old = {**config().to_dict(), "bf16": True, "tf32": False}
    del old["precision"]
    assert TrainConfig.from_dict(old).precision == "bf16"
    old.update(bf16=False, tf32=True)
    assert TrainConfig.from_dict(old).precision == "tf32"


def test_a_folder_of_the_bf16_flag_era_is_refused_with_one_line(tmp_path):
    train_run(config(), images(6, 0), Budget("steps", 1), tmp_path, runtime=QUIET)
    record = json.loads((tmp_path / "config.json").read_text())
    record["train"].pop("precision")
    record["train"].update(bf16=False, tf32=False)
    (tmp_path / "config.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"earlier mogsim \(bf16/tf32 options, now precision\)") as info:
        train_run(config(), images(6, 0), Budget("steps", 2), tmp_path, runtime=QUIET)
    assert "\n" not in str(info.value)
    assert train_run(config(), images(6, 0), Budget("steps", 1), tmp_path, runtime=QUIET, force=True)["steps"] == 1


def test_execution_rules():
    assert compile_choice(True, CPU, None) == (True, "asked for")
    assert compile_choice(None, CPU, 1e6)[0] is False
    assert compile_choice(None, CUDA, COMPILE_AFTER_S - 1)[0] is False
    assert compile_choice(None, CUDA, COMPILE_AFTER_S)[0] is True
    assert "1000 s uncompiled" in compile_choice(None, CUDA, 1000.0)[1]
    assert compile_choice(None, CUDA, None)[0] is False
    assert graph_choice(None, CUDA, 1)[0] and not graph_choice(None, CUDA, 2)[0] and not graph_choice(None, CPU, 1)[0]
    assert graph_choice(False, CUDA, 1) == (False, "turned off")


def test_cpu_launch_records_an_eager_uncompiled_step(tmp_path):
    summary = train_run(config(), images(6, 0), Budget("steps", 2), tmp_path, runtime=QUIET)
    ex = summary["execution"]
    assert ex["precision"] == "fp32" and ex["compiled"] is False and ex["cuda_graph"] is False
    assert "CPU" in ex["compile_reason"] and "GPU" in ex["graph_reason"] and ex["compile_after_s"] == COMPILE_AFTER_S
    assert json.loads((tmp_path / "summary.json").read_text())["execution"] == ex
    assert "eager step" in Execution(**{k: v for k, v in ex.items() if k != "compile_after_s"}).describe()
    with pytest.raises(InputError, match="cuda_graph: needs a CUDA device"):
        Trainer(config(), images(6, 0), runtime=RuntimeOptions(cuda_graph=True))
    with pytest.raises(InputError, match="cuda_graph: not supported with several processes"):
        Trainer(config(), images(6, 0), runtime=RuntimeOptions(cuda_graph=True),
                ctx=DistContext(world_size=2, device=CUDA))


def test_bf16_autocast_trains_on_the_cpu_too():
    trainer = Trainer(config(precision="bf16"), images(6, 0), runtime=QUIET)
    trainer.fit(3)
    assert all(torch.isfinite(p).all() for p in trainer.net.parameters()) and len(trainer.history) == 2


def test_timing_a_launch_leaves_the_trajectory_unchanged():
    """Timing the step (and warming it up) runs on a snapshot that is restored: a trainer that was timed first
    ends bitwise where an untouched one does (dropout and flips exercise the global and noise generators)."""
    cfg = config(net=tiny_net(dropout=0.3), xflip=True)
    plain = Trainer(cfg, images(6, 0), runtime=QUIET)  # dropout draws from torch's global generator: one at a time
    plain.fit(5)
    timed = Trainer(cfg, images(6, 0), runtime=QUIET)
    timed.fit(2)
    before = [t.clone() for t in timed._state_tensors()]
    seconds = timed._timed_step()
    assert seconds > 0 and timed.step == 2 and timed.optimizer.steps == 2
    assert all(torch.equal(a, b) for a, b in zip(before, timed._state_tensors()))
    timed.fit(5)
    assert timed.history == plain.history
    for a, b in zip(timed.net.parameters(), plain.net.parameters()):
        assert torch.equal(a, b)


# --- GPU: capture, replay, streams, fallback ------------------------------------------------------------------------

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cuda_trainer(cfg: TrainConfig, data, graph: bool) -> Trainer:
    runtime = RuntimeOptions(progress="none", log_every=2, compile=False, cuda_graph=graph)
    trainer = Trainer(cfg, data, runtime=runtime, ctx=DistContext(device=CUDA))
    trainer.prepare_execution(100)
    assert trainer.execution.cuda_graph is graph and trainer.execution.graph_fallback is None
    return trainer


@gpu
@pytest.mark.parametrize("precision, members", [("bf16", 1), ("fp32", 3)])
def test_a_replayed_step_is_the_eager_step(precision, members):
    """Graph replays draw the same data and noise as eager steps and update the same state: losses agree to the
    rounding of the kernels chosen, and the weights are far closer than one step's update (a missed or repeated
    update, or other noise, would move them by a whole step). Not bitwise: cuDNN's autotuned weight-gradient and
    attention-backward kernels may accumulate in any order, and Adam's first steps (update ~ lr * sign(gradient))
    turn rounding in near-zero gradients into differences of order lr; measured on an H200 (fp32, 3 members):
    9e-4 of the weights' norm after 4 steps, where one step moves them by about 1.2e-2 (this config on the CPU)."""
    # no dropout: the two trainers would draw it from torch's one global generator, in turns
    cfg = config(members, precision=precision, batch=16, net=tiny_net(members), xflip=True)
    data = [images(20, m) for m in range(members)]
    eager, graphed = _cuda_trainer(cfg, data, False), _cuda_trainer(cfg, data, True)
    tol = 2e-2 if precision == "bf16" else 1e-4

    @torch.no_grad()
    def distance(a, b):
        num = sum(float((x - y).double().norm() ** 2) for x, y in zip(a, b))
        return (num / sum(float(x.double().norm() ** 2) for x in a)) ** 0.5

    for k in range(4):
        before = [p.detach().clone() for p in eager.net.parameters()]
        eager.run_step(k)
        graphed.run_step(k)
    eager_losses, graphed_losses = eager._mean_since_last_row(), graphed._mean_since_last_row()
    torch.testing.assert_close(torch.tensor(graphed_losses[0]), torch.tensor(eager_losses[0]), rtol=tol, atol=0)
    assert graphed.optimizer.steps == 4 and int(graphed.optimizer._step_tensors[0]) == 4
    one_step = distance(list(eager.net.parameters()), before)
    apart = distance(list(eager.net.parameters()), list(graphed.net.parameters()))
    assert apart < (1.0 if precision == "bf16" else 0.25) * one_step, (apart, one_step)


@gpu
def test_capture_failure_falls_back_to_the_eager_step(monkeypatch):
    class SyncingHook(Retracted):
        def after_optimizer_step(self) -> None:
            if float(self.calls) >= 0:  # a host read: cannot be captured
                super().after_optimizer_step()

    monkeypatch.setattr(loop, "build_from_config", lambda cfg: SyncingHook(3 * 8 * 8))
    trainer = Trainer(config(precond="identity"), images(6, 0), ctx=DistContext(device=CUDA),
                      runtime=RuntimeOptions(progress="none", compile=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(4)
    assert trainer.execution.cuda_graph is False and trainer.execution.graph_fallback
    assert any("capture failed" in str(w.message) for w in caught)
    assert int(trainer.net.calls) == 4 and trainer.step == 4
    torch.nn.functional.dropout(torch.ones(8, device=CUDA), 0.5)  # torch's default generator draws again


@gpu
def test_gpu_resume_continues_the_loss_curve(tmp_path):
    cfg = config(precision="bf16", batch=16)
    runtime = RuntimeOptions(progress="none", log_every=2, checkpoint_every=4, compile=False)
    ctx = DistContext(device=CUDA)
    full = train_run(cfg, images(20, 0), Budget("steps", 8), tmp_path / "full", runtime=runtime, ctx=ctx)
    train_run(cfg, images(20, 0), Budget("steps", 4), tmp_path / "cut", runtime=runtime, ctx=ctx)
    cut = train_run(cfg, images(20, 0), Budget("steps", 8), tmp_path / "cut", runtime=runtime, ctx=ctx)
    assert cut["resumed_at_step"] == 4 and full["execution"]["cuda_graph"]
    a = load_checkpoint(RunFolder(tmp_path / "full").latest_checkpoint())["loss"]["history"]
    b = load_checkpoint(RunFolder(tmp_path / "cut").latest_checkpoint())["loss"]["history"]
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=2e-2, atol=0)


class _ReplayOnCPU:
    """Stands in for a CUDA graph on the CPU: a replay runs the captured body as a graph would: its backward writes
    fresh gradients (captured with none present) and it has no host effect (the host's Adam count is put back)."""

    def __init__(self, trainer: Trainer, body) -> None:
        self.trainer, self.body = trainer, body

    def replay(self) -> None:
        steps = self.trainer.optimizer.steps
        self.trainer.optimizer.zero_grad()
        self.body()
        self.trainer.optimizer.steps = steps


@pytest.mark.parametrize("members", [1, 2])
def test_the_captured_step_path_equals_the_eager_step(monkeypatch, members):
    """The path a CUDA graph takes (static buffers filled by the host, the device-only step body, warm-up and
    capture on a snapshot that is then restored), run on the CPU with a stand-in for the graph, trains bitwise like
    the eager step: dropout, flips and several members included."""
    from mogsim.training import execution

    def side(steps, run, device):
        for step in steps:
            run(step)
        return 0.0

    def capture(body, generators, device):
        trainer = captured.pop()
        body()  # capturing runs the Python body once (its device effects are undone by the trainer's restore)
        return _ReplayOnCPU(trainer, body), None, 0.0

    monkeypatch.setattr(execution, "graph_choice", lambda requested, device, world: (requested is not False, "test"))
    monkeypatch.setattr(execution, "run_on_side_stream", side)
    monkeypatch.setattr(execution, "capture", capture)
    cfg = config(members, net=tiny_net(members, dropout=0.2), xflip=True, grad_clip=0.5)
    data = [images(6, m) for m in range(members)]
    eager = Trainer(cfg, data, runtime=RuntimeOptions(progress="none", log_every=2, cuda_graph=False))
    eager.fit(5)
    graphed = Trainer(cfg, data, runtime=QUIET)
    captured = [graphed]
    graphed.fit(5)
    assert graphed.execution.cuda_graph and graphed._graph is not None and graphed.optimizer.steps == 5
    assert graphed.history == eager.history
    for a, b in zip(graphed.net.parameters(), eager.net.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(graphed.ema.module.parameters(), eager.ema.module.parameters()):
        assert torch.equal(a, b)
