"""The training engine: one :class:`Trainer` per process for M independent models at once, exact resume.

**Members.** The trainer trains M models ("members") on M training sets at once: a batched network whose
parameters all carry a leading member axis (the :class:`~mogsim.nets.MLP` with ``members=M``), M separate networks
behind one member axis for families without a batched form (a :class:`~mogsim.nets.MemberList` of UNets, which the
registry builds for ``members=M``), or, for M = 1, any network. Each step draws for every member B items of its own
set, noise levels (M, B) from the loss object and noise (M, B, *shape). Members never interact: their losses are
backpropagated separately (a MemberList member by member, on its own CUDA stream when the step is captured),
gradients are clipped per member, Adam is element-wise and the EMA is too, so member m's update depends only on its
own data, weights and optimizer state and on row m of the step's random draws. Trained alone (M = 1) on the same
data and fed the same rows, a member follows the same trajectory (tested).

**Randomness**, all a function of (seed, step) or of saved state, which makes resume exact:

* data order: one :class:`~mogsim.training.data_order.DataOrder` per member (its own N_m), seeded from
  ``(seed, "data-order", m)``; indices are uploaded for many steps at a time so steps do not wait on the host;
* noise levels, noise and flips: drawn for the whole global batch from a generator seeded by
  ``(seed, "training-noise", step)``, then sliced per rank, so the run does not depend on the number of processes;
* initial weights ``(seed, "init")``; dropout: the global torch generator, seeded per rank and saved in checkpoints.

**A step**: loss (EDM's objective: sum over coordinates, mean over the batch) -> backward (DDP averages gradients
over ranks) -> per-member gradient norms (and clipping, if on) -> Adam with the warmed-up learning rate -> the net's
``after_optimizer_step()``, if it defines one -> EMA update -> the per-member loss and gradient-norm sums and a
"first non-finite step" marker, accumulated on the device. The step reads only static buffers that the host fills
before it (batch indices, learning rate, EMA weight, step number, the reseeded noise generator), so on a GPU the
whole step is captured once in a CUDA graph and replayed (:mod:`mogsim.training.execution` has the rule, the
compile choice and the fallback). The host reads the sums and the marker at log rows and checkpoints only, so a
non-finite loss or gradient raises :class:`TrainingDiverged` naming the first bad step at the next log row, before
any checkpoint of a diverged state is written.

**The hook** ``after_optimizer_step()``: if the trained network (the module inside the
:class:`~mogsim.nets.PreconditionedDenoiser`; for a MemberList, each member network) defines it, the trainer calls it
without gradients after every optimizer step and before the EMA update, in the eager and in the captured step (e.g.
paper 2's low-rank denoiser retracts its bases onto orthonormal ones). To be captured it must work on the device
only (no ``.item()``, no Python state that changes per step); a hook that cannot be captured makes capture fail,
and the trainer then falls back to the eager step, with a warning and the reason recorded.

**Exactness.** On the CPU the eager step is deterministic, and a resumed run is bitwise identical to an
uninterrupted one. On a GPU a replay computes exactly what the eager step computes, but a new process may pick
other cuDNN algorithms (autotuning) and bf16 rounds differently with them, so a resumed GPU run agrees with an
uninterrupted one to the rounding of its precision, not bitwise (measured in BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import csv
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..denoiser import ProgressFactory
from ..devices import float32_precision
from ..errors import InputError
from ..io import atomic_path
from ..nets import MemberList, PreconditionedDenoiser, build_from_config, count_parameters
from ..nets.precond import per_member
from ..progress import silent
from ..runs import RunFolder, load_checkpoint, save_checkpoint
from ..seeds import derive_seed
from . import execution
from .checkpoint import FORMAT, VERSION, capture_rng_state, check_format, restore_rng_state
from .config import RuntimeOptions, TrainConfig
from .data_order import DataOrder
from .distributed import DistContext
from .ema import EMA
from .execution import Execution
from .losses import Loss, make_loss, make_precond, parametrisation, per_sample_loss
from .optim import Adam

LOG_FIELDS = ("step", "images", "epoch", "loss", "lr", "grad_norm", "images_per_s", "wall_s")
#: index-upload budget: member x steps x batch indices per host-to-device copy
_INDEX_CHUNK_ITEMS = 1 << 22
_INDEX_CHUNK_STEPS = 256


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; ``step`` is the first 0-based step where it did."""

    def __init__(self, step: int, images: int, checkpoint_step: int | None = None) -> None:
        self.step, self.images, self.checkpoint_step = step, images, checkpoint_step
        kept = (f"the last checkpoint (step {checkpoint_step}) was kept" if checkpoint_step is not None
                else "no checkpoint was written")
        super().__init__(f"training diverged: non-finite loss or gradient at step {step} (0-based; after "
                         f"{images} images); lower lr, set grad_clip, or train with precision=fp32; {kept}")


@contextlib.contextmanager
def float32_mode(device: torch.device, tf32: bool) -> Iterator[None]:
    """The trainer's float32 mode: :func:`mogsim.devices.float32_precision` (TF32 on or off) and cuDNN autotuning
    on CUDA; the previous settings come back afterwards."""
    old_benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        with float32_precision(tf32):
            yield
    finally:
        torch.backends.cudnn.benchmark = old_benchmark


def member_grad_norms(grads: Sequence[torch.Tensor], members: int) -> torch.Tensor:
    """(M,) gradient norms, one per member (every gradient of a batched net has the member axis first)."""
    if members == 1:
        return torch.nn.utils.get_total_norm(grads).reshape(1)
    squares = torch.stack([g.reshape(members, -1).float().square().sum(dim=1) for g in grads])
    return squares.sum(dim=0).sqrt()


def clip_member_grads_(grads: Sequence[torch.Tensor], norms: torch.Tensor, max_norm: float) -> None:
    """Scale each member's gradients so that its norm is at most ``max_norm`` (``torch.nn.utils.clip_grad_norm_``'s
    rule, per member: a global norm would couple the members)."""
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    if coef.numel() == 1:
        torch._foreach_mul_(list(grads), coef.reshape(()))
        return
    for g in grads:
        g.mul_(coef.reshape((-1,) + (1,) * (g.ndim - 1)).to(g.dtype))


class TrainStep(nn.Module):
    """``forward(y, sigma, noise) -> (M, B) per-sample losses`` for y (M, B, *shape): the module DDP wraps."""

    def __init__(self, denoiser: PreconditionedDenoiser, loss: Loss, *, channels_last: bool = False) -> None:
        super().__init__()
        self.denoiser, self.loss, self.channels_last = denoiser, loss, channels_last

    def forward(self, y: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.denoiser.members > 1:
            return per_sample_loss(self.denoiser.denoise, self.loss, y, sigma, noise)
        y0, noise0 = y[0], noise[0]  # a plain network sees (B, *shape)
        if self.channels_last:
            y0 = y0.contiguous(memory_format=torch.channels_last)
            noise0 = noise0.contiguous(memory_format=torch.channels_last)
        return per_sample_loss(self.denoiser.denoise, self.loss, y0, sigma[0], noise0)[None]


@dataclass
class _Part:
    """A share of the members whose loss is backpropagated on its own: ``model(y[rows], ...)`` gives their
    (m, b) per-sample losses."""

    model: nn.Module
    rows: slice


class _StopRequest:
    """Turns the first Ctrl-C during training into a request honoured at the next step boundary (the state is then
    consistent and can be saved); a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self, enabled: bool) -> Iterator["_StopRequest"]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class Trainer:
    """Trains ``config.net`` on ``data``: one tensor (N, *sample_shape) or M tensors (N_m, *sample_shape), one per
    member; uint8 pixels (kept on the device as uint8, mapped to [-1, 1] inside the step) or finite floats.

    Use :meth:`fit` for a run. :meth:`prepare_execution` chooses how steps run (compiled or not, captured in a CUDA
    graph or eager; :mod:`mogsim.training.execution`) and :meth:`run_step` runs one that way; :meth:`train_step` and
    :meth:`forward_backward` always run the eager step (tests, benchmarks). In a multi-process job every rank builds
    its own Trainer with the same arguments.
    """

    def __init__(self, config: TrainConfig, data: torch.Tensor | Sequence[torch.Tensor], *,
                 runtime: RuntimeOptions | None = None, ctx: DistContext | None = None) -> None:
        self.config = config
        self.runtime = runtime or RuntimeOptions()
        self.ctx = ctx or DistContext()
        device = self.device = self.ctx.device
        sets = [data] if isinstance(data, torch.Tensor) else list(data)
        self.sample_shape = tuple(config.net["sample_shape"])
        self._check_data(sets)
        self.members = len(sets)
        if config.members != self.members:
            raise InputError(f"data: {self.members} training sets for a network of {config.members} members; pass "
                             "one set per member", parameter="data")
        if len(config.sigma_data) not in (1, self.members):
            raise InputError(f"sigma_data: {len(config.sigma_data)} values for {self.members} members; pass 1 or "
                             f"{self.members}", parameter="sigma_data")
        if config.batch % self.ctx.world_size:
            raise InputError(f"batch={config.batch}: must be divisible by the number of processes "
                             f"({self.ctx.world_size})", parameter="batch")
        if config.xflip and len(self.sample_shape) != 3:
            raise InputError("xflip: needs image data (N, C, H, W)", parameter="xflip")
        if self.runtime.cuda_graph and device.type != "cuda":
            raise InputError(f"cuda_graph: needs a CUDA device (this run is on {device}); leave it out",
                             parameter="cuda_graph")
        if self.runtime.cuda_graph and self.ctx.distributed:
            raise InputError("cuda_graph: not supported with several processes yet (DDP's collectives are not "
                             "captured); leave it out", parameter="cuda_graph")
        self.local_batch = config.batch // self.ctx.world_size
        self.coords = math.prod(self.sample_shape)
        self.counts = [int(s.shape[0]) for s in sets]
        self.data = self._stack(sets).to(device)
        self._rows = torch.arange(self.members, device=device)[:, None]

        torch.manual_seed(derive_seed(config.seed, "init"))  # the same initial weights on every rank
        net = build_from_config(config.net).to(device)
        channels_last = bool(self.runtime.channels_last and len(self.sample_shape) == 3)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.precond = make_precond(config.precond)
        has_sd = parametrisation(config.precond).has_sigma_data
        self.denoiser = PreconditionedDenoiser(net, self.precond, sigma_data=config.sigma_data if has_sd else None)
        self.denoiser.to(device)
        sd = self.denoiser.sigma_data  # the loss weighs member m's samples with sigma_data[m]
        self.loss = make_loss(config.precond, p_mean=config.p_mean, p_std=config.p_std,
                              sigma_data=per_member(sd.float(), torch.empty(self.members, 1)) if has_sd else None,
                              sigma_range=config.sigma_range)
        self.ema = EMA(net, config.ema_halflife_images, config.ema_rampup_ratio)
        params = [p for p in net.parameters() if p.requires_grad]
        self.optimizer = Adam(params, betas=config.adam_betas, eps=config.adam_eps, fused=device.type == "cuda")
        self.num_parameters = count_parameters(net)
        self.step_module = TrainStep(self.denoiser, self.loss, channels_last=channels_last)
        self.model: nn.Module = self.step_module
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP  # only multi-process jobs need it

            self.model = DDP(self.step_module, device_ids=[device] if device.type == "cuda" else None)
        self.parts = self._make_parts(channels_last)
        self._member_nets = list(net.nets) if isinstance(net, MemberList) else [net]
        # per-member parameter lists of a MemberList (a batched net has the member axis inside each tensor)
        self._member_params = ([[p for p in m.parameters() if p.requires_grad] for m in self._member_nets]
                               if isinstance(net, MemberList) else None)
        self.compiled = False
        if self.runtime.compile:
            self._compile()
        torch.manual_seed(derive_seed(config.seed, "dropout", self.ctx.rank))  # dropout stream, per rank
        self.orders = [DataOrder(n, derive_seed(config.seed, "data-order", m)) for m, n in enumerate(self.counts)]
        self._chunk_steps = max(1, min(_INDEX_CHUNK_STEPS, _INDEX_CHUNK_ITEMS // (self.members * config.batch)))
        self._index_chunk: tuple[int, torch.Tensor | None] = (0, None)
        self._noise_generator = torch.Generator(device=device)  # reseeded from (seed, step) at every step
        # Static inputs of a step, filled by the host before it (a captured graph reads them by address).
        self._idx = torch.zeros((self.members, self.local_batch), dtype=torch.long, device=device)
        self._lr = torch.zeros((), device=device)
        self._lr_value = config.lr_at(0)
        self._ema_weight = torch.zeros((), device=device)
        self._step_t = torch.zeros((), dtype=torch.int64, device=device)
        self._sums = torch.zeros(2, self.members, device=device, dtype=torch.float64)  # loss, grad norm
        self._first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        self._count = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_outputs: Any = None
        self._streams: list[torch.cuda.Stream] | None = None
        self.execution: Execution | None = None
        self.step = 0
        self.checkpoint_step: int | None = None
        self.history: list[list[float]] = []

    def _make_parts(self, channels_last: bool) -> list[_Part]:
        """One part per member of a MemberList (each backpropagated on its own), else one part for all members."""
        net = self.net
        if not isinstance(net, MemberList) or self.ctx.distributed:
            return [_Part(self.model, slice(0, self.members))]
        cfg, parts = self.config, []
        has_sd = parametrisation(cfg.precond).has_sigma_data
        for m, member in enumerate(net.nets):
            sd = self.denoiser.sigma_data[m] if has_sd else None  # as a one-member trainer holds it
            denoiser = PreconditionedDenoiser(member, self.precond, sigma_data=sd).to(self.device)
            loss = make_loss(cfg.precond, p_mean=cfg.p_mean, p_std=cfg.p_std,
                             sigma_data=sd.float() if sd is not None else None)
            parts.append(_Part(TrainStep(denoiser, loss, channels_last=channels_last), slice(m, m + 1)))
        return parts

    def _compile(self) -> None:
        """``torch.compile`` each network in place (parameter names and checkpoints stay those of the plain one)."""
        for net in self._member_nets:
            net.compile()
        self.compiled = True

    # --- data -------------------------------------------------------------------------------------------------
    def _check_data(self, sets: list[torch.Tensor]) -> None:
        if not sets:
            raise InputError("data: no training set given", parameter="data")
        for m, s in enumerate(sets):
            where = "data" if len(sets) == 1 else f"data[{m}]"
            if not isinstance(s, torch.Tensor) or s.ndim < 2 or s.shape[0] < 1:
                raise InputError(f"{where}: must be a tensor (N, *sample_shape) with N >= 1", parameter="data")
            if s.dtype != torch.uint8 and not s.is_floating_point():
                raise InputError(f"{where}: has dtype {s.dtype}; pass uint8 pixels or floats", parameter="data")
            if tuple(s.shape[1:]) != self.sample_shape:
                raise InputError(f"{where}: has sample shape {tuple(s.shape[1:])} but the network expects "
                                 f"{self.sample_shape}; build the network config with sample_shape="
                                 f"{tuple(s.shape[1:])}", parameter="data")
            if s.is_floating_point():
                bad = ~torch.isfinite(s.reshape(s.shape[0], -1)).all(dim=1)
                if bool(bad.any()):
                    first = int(bad.nonzero()[0, 0])
                    raise InputError(f"{where}: item {first} (and {int(bad.sum()) - 1} more) holds NaN or Inf "
                                     "values; clean the training set", parameter="data")

    def _stack(self, sets: list[torch.Tensor]) -> torch.Tensor:
        """(M, N_max, *shape): the sets padded with zeros (never drawn: each member draws below its own N_m)."""
        if len(sets) == 1:
            return sets[0].unsqueeze(0)
        dtype = torch.uint8 if all(s.dtype == torch.uint8 for s in sets) else torch.float32
        out = torch.zeros((len(sets), max(self.counts), *self.sample_shape), dtype=dtype)
        for m, s in enumerate(sets):
            out[m, :s.shape[0]] = s.to(dtype)
        return out

    def _global_indices(self, step: int) -> torch.Tensor:
        """Global batch ``step``'s item indices (M, B), on the device; uploaded many steps at a time (from pinned
        memory without waiting, on CUDA)."""
        start, chunk = self._index_chunk
        if chunk is None or not start <= step < start + chunk.shape[0]:
            batch, steps = self.config.batch, self._chunk_steps
            arr = np.stack([o.stream(step * batch, steps * batch).reshape(steps, batch) for o in self.orders], 1)
            host = torch.from_numpy(arr)
            if self.device.type == "cuda":
                host = host.pin_memory()
            self._index_chunk = start, chunk = step, host.to(self.device, non_blocking=True)
        return chunk[step - start]

    def _prepare(self, step: int) -> None:
        """Host side of step ``step``: its inputs and its scalars into their buffers (no host synchronisation)."""
        self._prepare_inputs(step)
        self._prepare_scalars(step)

    def _prepare_scalars(self, step: int) -> None:
        """Learning rate, EMA weight and step number of step ``step`` (the host's formulas, exactly)."""
        cfg = self.config
        self._lr_value = cfg.lr_at(step)
        self._lr.fill_(self._lr_value)
        self._ema_weight.fill_(1.0 - self.ema.beta((step + 1) * cfg.batch, cfg.batch))
        self._step_t.fill_(step)

    def _prepare_inputs(self, step: int) -> None:
        """This rank's batch indices of step ``step`` into the index buffer; the noise generator reseeded."""
        lo = self.ctx.rank * self.local_batch
        self._idx.copy_(self._global_indices(step)[:, lo:lo + self.local_batch])
        self._noise_generator.manual_seed(derive_seed(self.config.seed, "training-noise", step))

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(clean y (M, b, *shape), sigma (M, b), noise (M, b, *shape)) from the index buffer and the generator:
        device work only (it is part of the captured step)."""
        cfg, dev, m = self.config, self.device, self.members
        b, lo = self.local_batch, self.ctx.rank * self.local_batch
        gen = self._noise_generator
        sigma = self.loss.sample_sigma((m, cfg.batch), gen, dev)[:, lo:lo + b]
        noise = torch.randn((m, cfg.batch, *self.sample_shape), generator=gen, device=dev)[:, lo:lo + b]
        y = self.data[self._rows, self._idx]
        y = y.float().div_(127.5).sub_(1.0) if y.dtype == torch.uint8 else y.float()
        if cfg.xflip:
            flip = (torch.rand((m, cfg.batch), generator=gen, device=dev) < 0.5)[:, lo:lo + b]
            y = torch.where(flip.reshape(m, b, 1, 1, 1), y.flip(-1), y)
        return y, sigma, noise

    def batch_for_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's (clean y (M, b, *shape), sigma (M, b), noise (M, b, *shape)) of global batch ``step``."""
        self._prepare_inputs(step)
        return self._draw()

    # --- one step ---------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    def _backward(self, y: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Each part's loss backpropagated (parts on their own CUDA streams when :attr:`_streams` is set, as in a
        captured step); returns each member's sum of per-sample losses (M,), detached."""
        streams = self._streams
        main = torch.cuda.current_stream(self.device) if streams else None
        sums = []
        for k, part in enumerate(self.parts):
            stream = streams[k] if streams else None
            if stream is not None:
                stream.wait_stream(main)
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                rows = part.rows
                with self._autocast():
                    per_sample = part.model(y[rows], sigma[rows], noise[rows])
                (per_sample.sum() * (self.coords / per_sample.shape[1])).backward()  # sum of batch means
                sums.append(per_sample.detach().sum(dim=1))
        if streams:
            for stream in streams:
                main.wait_stream(stream)
        return sums[0] if len(sums) == 1 else torch.cat(sums)

    def _member_norms(self) -> torch.Tensor:
        """(M,) gradient norms, clipped to ``grad_clip`` per member if it is set (returns the norms before)."""
        clip = self.config.grad_clip
        if self._member_params is None:
            grads = [p.grad for p in self.optimizer.params if p.grad is not None]
            norms = member_grad_norms(grads, self.members)
            if clip > 0:
                clip_member_grads_(grads, norms, clip)
            return norms
        groups = [[p.grad for p in params if p.grad is not None] for params in self._member_params]
        norms = torch.stack([torch.nn.utils.get_total_norm(g) for g in groups])
        if clip > 0:
            for g, norm in zip(groups, norms):
                clip_member_grads_(g, norm.reshape(1), clip)
        return norms

    @torch.no_grad()
    def _update(self, loss_sum: torch.Tensor) -> torch.Tensor:
        """Norms and clipping, Adam, the nets' ``after_optimizer_step`` hooks, EMA, and the device-side sums and
        first-bad-step marker; returns the (M,) gradient norms. Device work only."""
        norms = self._member_norms()
        self.optimizer.step(self._lr if self.optimizer.fused else self._lr_value)
        for net in self._member_nets:
            hook = getattr(net, "after_optimizer_step", None)
            if callable(hook):
                hook()
        self.ema.average_in(self.net, self._ema_weight)
        self._sums[0].add_(loss_sum)
        self._sums[1].add_(norms)
        finite = torch.isfinite(loss_sum.sum() + norms.sum())  # a NaN or inf anywhere makes the sum non-finite
        self._first_bad.copy_(torch.where(finite | (self._first_bad >= 0), self._first_bad, self._step_t))
        return norms

    def _device_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole step on the device from the static inputs: what a CUDA graph captures."""
        loss_sum = self._backward(*self._draw())
        return loss_sum, self._update(loss_sum)

    def forward_backward(self, step: int) -> torch.Tensor:
        """Zero the gradients, compute step ``step``'s loss on this rank's slice and backpropagate (DDP averages
        the gradients over ranks). Returns each member's sum of per-sample losses (M,) (detached, on the device)."""
        y, sigma, noise = self.batch_for_step(step)
        self.optimizer.zero_grad()
        return self._backward(y, sigma, noise)

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step, eagerly (never captured); returns (per-member sums of this rank's per-sample losses
        (M,), per-member gradient norms (M,)), both on the device."""
        self._prepare_scalars(step)
        loss_sum = self.forward_backward(step)
        norms = self._update(loss_sum)
        self._count += 1
        self.step = step + 1
        return loss_sum, norms

    def run_step(self, step: int) -> None:
        """One optimizer step the way :meth:`prepare_execution` chose: a replay of the captured step, else
        :meth:`train_step`. No host synchronisation."""
        if self._graph is None:
            self.train_step(step)
            return
        self._prepare(step)
        self._graph.replay()
        self.optimizer.count_replayed_step()
        self._count += 1
        self.step = step + 1

    # --- execution: compile, capture ----------------------------------------------------------------------------
    def prepare_execution(self, steps_planned: int, progress: ProgressFactory = silent) -> Execution:
        """Choose how the next ``steps_planned`` steps run (:mod:`mogsim.training.execution`: compile or not,
        capture the step in a CUDA graph or not), compile, warm up and capture accordingly, and record it in
        :attr:`execution`. Neither timing nor warming up changes the trajectory: both run on a snapshot of the
        state that is restored afterwards."""
        rt, dev = self.runtime, self.device
        graph, graph_reason = execution.graph_choice(rt.cuda_graph, dev, self.ctx.world_size)
        record = Execution(self.config.precision, self.compiled, "asked for" if self.compiled else "", graph,
                           graph_reason, streams=len(self.parts) if graph else 1)
        advance = (progress("preparing the step (timing it; compiling takes ~1.5 min if chosen)", 1)
                   if dev.type == "cuda" else silent("", 1))
        with float32_mode(dev, self.config.precision == "tf32"):
            if graph:
                self._capture_or_fall_back(record)
            if not self.compiled:
                predicted = None
                if rt.compile is None and dev.type == "cuda" and steps_planned > 0:
                    step_s = self._timed_step()
                    record.timed_step_ms, predicted = 1000 * step_s, step_s * steps_planned
                choice = self.ctx.broadcast_object(execution.compile_choice(rt.compile, dev, predicted))
                record.compiled, record.compile_reason = choice
                record.predicted_uncompiled_s = predicted
                if choice[0]:
                    self._compile()
                    self._graph = None
                    if graph:
                        self._capture_or_fall_back(record)
        record.cuda_graph = self._graph is not None
        self.execution = record
        advance(1, record.describe())
        return record

    def _capture_or_fall_back(self, record: Execution) -> None:
        """Warm up and capture the step; on failure keep the eager step, warn once and record why."""
        snapshot = self._snapshot()
        parts = len(self.parts)
        try:
            side_by_side = parts > 1 and self.device.type == "cuda"
            self._streams = [torch.cuda.Stream(self.device) for _ in range(parts)] if side_by_side else None

            def warm(step: int) -> None:
                self._prepare(step)
                self.optimizer.zero_grad()
                self._device_step()

            record.warmup_s = execution.run_on_side_stream(range(self.step, self.step + execution.WARMUP_STEPS),
                                                           warm, self.device)
            self._restore(snapshot)
            self.optimizer.zero_grad()  # the captured backward writes fresh (graph-owned) gradients every replay
            self._prepare(self.step)
            # the outputs stay referenced: replays write them (and the graph-owned gradients) in place
            self._graph, self._graph_outputs, record.capture_s = execution.capture(
                self._device_step, [self._noise_generator], self.device)
        except Exception as exc:  # noqa: BLE001 - any operation that cannot be captured: keep the eager step
            self._graph, self._streams = None, None
            self.optimizer.zero_grad()
            # reseeded from (seed, step) at every step, so a fresh generator draws what the old one would have
            self._noise_generator = execution.release_generators(self.device)
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            record.graph_fallback = reason
            warnings.warn(f"CUDA graph capture failed, training with the eager step ({reason})", RuntimeWarning,
                          stacklevel=3)
        finally:
            self._restore(snapshot)

    def _timed_step(self) -> float:
        """Seconds per step as steps would run now (replays or eager steps), on a snapshot restored afterwards."""
        snapshot = self._snapshot()
        try:
            return execution.time_steps(self.run_step, self.step, self.device)
        finally:
            self._restore(snapshot)

    def _state_tensors(self) -> list[torch.Tensor]:
        return (list(self.net.parameters()) + list(self.net.buffers()) + self.ema.state_tensors()
                + self.optimizer.state_tensors() + [self._sums, self._first_bad])

    def _snapshot(self) -> tuple[Any, ...]:
        """Everything a step changes: state tensors (copied), host counters and torch's generators."""
        tensors = [t.detach().clone() for t in self._state_tensors()]
        return tensors, self.optimizer.steps, self._count, self.step, capture_rng_state(self.device)

    @torch.no_grad()
    def _restore(self, snapshot: tuple[Any, ...]) -> None:
        tensors, self.optimizer.steps, self._count, self.step, rng = snapshot
        for t, saved in zip(self._state_tensors(), tensors):
            t.copy_(saved)
        restore_rng_state(rng, self.device)

    # --- losses between log rows ------------------------------------------------------------------------------
    def _reset_sums(self) -> None:
        self._sums.zero_()  # in place: a captured step adds to these very tensors
        self._first_bad.fill_(-1)
        self._count = 0

    def _check_finite(self) -> None:
        """Raise :class:`TrainingDiverged` if any step since the last log row was not finite (on any rank)."""
        big = torch.iinfo(torch.int64).max
        bad = torch.where(self._first_bad >= 0, self._first_bad, torch.full_like(self._first_bad, big)).clone()
        self.ctx.all_reduce_(bad, "min")
        if int(bad.item()) != big:
            raise TrainingDiverged(int(bad.item()), int(bad.item()) * self.config.batch, self.checkpoint_step)

    def _mean_since_last_row(self) -> tuple[list[float], list[float]]:
        """Per-member mean loss per sample and mean gradient norm since the last log row, over all ranks."""
        sums = self._sums.clone()
        self.ctx.all_reduce_(sums[0], "sum")
        samples = max(self._count, 1) * self.local_batch * self.ctx.world_size
        return (sums[0] / samples).tolist(), (sums[1] / max(self._count, 1)).tolist()

    # --- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint payload (collective in a multi-process job: gathers every rank's RNG state)."""
        cfg = self.config
        rng = self.ctx.all_gather_object(capture_rng_state(self.device))
        sums = self._sums.clone()
        self.ctx.all_reduce_(sums[0], "sum")  # rank 0 carries the loss sums of all ranks on resume
        sd = self.denoiser.sigma_data
        return {
            "format": FORMAT, "version": VERSION,
            "step": self.step, "images": self.step * cfg.batch, "world_size": self.ctx.world_size,
            "members": self.members, "net_config": cfg.net,
            "precond": {"name": cfg.precond, "sigma_data": None if sd is None else sd.tolist()},
            "train_config": cfg.to_dict(),
            "net": self.net.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
            "data_order": [o.state(self.step, cfg.batch) for o in self.orders],
            "rng": rng,
            "loss": {"history": self.history, "sums": sums.cpu(), "count": self._count},
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (in place: a captured step keeps working); the run continues exactly
        where the checkpoint left it."""
        check_format(ckpt)
        if ckpt["train_config"] != self.config.to_dict():
            raise InputError("checkpoint: it was written with a different training config; use its config or "
                             "start a new run", parameter="checkpoint")
        self.net.load_state_dict(ckpt["net"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        expected = [o.state(self.step, self.config.batch) for o in self.orders]
        if ckpt["data_order"] != expected:
            raise InputError(f"checkpoint: data order {ckpt['data_order'][0]} does not match this data set "
                             f"({expected[0]}); the training set changed", parameter="checkpoint")
        rng = ckpt["rng"]
        if len(rng) == self.ctx.world_size:
            restore_rng_state(rng[self.ctx.rank], self.device)
        else:  # a different number of processes: dropout streams restart from (seed, rank, step)
            torch.manual_seed(derive_seed(self.config.seed, "dropout", self.ctx.rank, self.step))
        loss = ckpt["loss"]
        self.history = [list(row) for row in loss["history"]]
        self._reset_sums()
        self._sums.copy_(loss["sums"])
        self._count = int(loss["count"])
        if not self.ctx.is_main:
            self._sums[0].zero_()  # rank 0 carries the loss sums of all ranks
        self.checkpoint_step = self.step

    def save(self, run_dir: str | Path) -> Path | None:
        """Write ``checkpoints/ckpt-<step>.pt`` (rank 0) and prune old ones; returns the path on rank 0."""
        payload = self.state_dict()
        path = None
        if self.ctx.is_main:
            folder = RunFolder(run_dir)
            path = save_checkpoint(folder.checkpoint_path(self.step), payload)
            folder.prune_checkpoints(self.runtime.keep_checkpoints)
        self.checkpoint_step = self.step
        self.ctx.barrier()
        return path

    def resume(self, path: str | Path) -> None:
        """Load a checkpoint file."""
        self.load_state_dict(load_checkpoint(path, map_location=self.device))

    def ema_denoiser(self) -> PreconditionedDenoiser:
        """The EMA weights as a denoiser (eval mode, sharing the EMA's storage); ``.member(m)`` for member m."""
        return PreconditionedDenoiser(self.ema.module, self.precond, sigma_data=self.denoiser.sigma_data).eval()

    # --- the loop ---------------------------------------------------------------------------------------------
    def fit(self, total_steps: int, run_dir: str | Path | None = None, *, progress: ProgressFactory = silent,
            deadline: float | None = None, description: str = "train") -> dict[str, Any]:
        """Train from :attr:`step` to ``total_steps``; with ``run_dir``, log to ``log.csv`` and checkpoint there.

        The first call chooses how steps run (:meth:`prepare_execution`, for the steps left). ``deadline`` (a
        ``time.monotonic()`` value) stops early with a checkpoint; Ctrl-C stops at the next step boundary with a
        checkpoint, then raises ``KeyboardInterrupt``. Returns a summary: steps, images, whether the budget was
        reached (``complete``), the last logged loss (mean over members and per member), mean images/s and wall
        time (the preparation of the step, e.g. compiling, not included), how the steps ran (``execution``) and,
        on CUDA, the peak memory allocated by this process.
        """
        run_dir = Path(run_dir) if run_dir is not None else None
        if self.execution is None and total_steps > self.step:
            self.prepare_execution(total_steps - self.step, progress)
        log = _CsvLog(run_dir / "log.csv", self.step, self.members) if run_dir and self.ctx.is_main else None
        advance = progress(description, total_steps)
        if self.step:
            advance(self.step)
        stop = _StopRequest()
        try:
            with float32_mode(self.device, self.config.precision == "tf32"), \
                    stop.installed(not self.ctx.distributed):
                return self._fit(total_steps, run_dir, log, advance, stop, deadline)
        finally:
            if log is not None:
                log.close()

    def _fit(self, total_steps: int, run_dir: Path | None, log: "_CsvLog | None", advance: Any, stop: _StopRequest,
             deadline: float | None) -> dict[str, Any]:
        cfg, rt = self.config, self.runtime
        start_step, t_start = self.step, time.perf_counter()
        t_last, step_last = t_start, self.step
        complete = True
        while self.step < total_steps:
            self.run_step(self.step)
            done = self.step
            at_log = done % rt.log_every == 0 or done == total_steps
            at_ckpt = run_dir is not None and ((rt.checkpoint_every and done % rt.checkpoint_every == 0)
                                               or done == total_steps)
            if at_log or at_ckpt:
                self._check_finite()
            note = None
            if at_log:
                now = time.perf_counter()
                ips = (done - step_last) * cfg.batch * self.members / max(now - t_last, 1e-9)
                note = self._log_row(done, log, ips, now - t_start)
                t_last, step_last = now, done
            if at_ckpt:
                self.save(run_dir)
            try:
                advance(1, note)
            except KeyboardInterrupt:  # raised by a progress callback at a step boundary: stop as for Ctrl-C
                stop.requested = True
            out_of_time = deadline is not None and time.monotonic() >= deadline and done < total_steps
            if stop.requested or out_of_time:
                if run_dir is not None and not at_ckpt:
                    self._check_finite()
                    self.save(run_dir)
                if stop.requested:
                    raise KeyboardInterrupt
                complete = False
                break
        execution.synchronize(self.device)
        wall = time.perf_counter() - t_start
        last = self.history[-1][1:] if self.history else []
        return {"steps": self.step, "images": self.step * cfg.batch, "steps_this_launch": self.step - start_step,
                "complete": complete, "members": self.members,
                "final_loss": float(np.mean(last)) if last and all(map(math.isfinite, last)) else None,
                "final_loss_per_member": last, "wall_s": wall,
                "images_per_s": (self.step - start_step) * cfg.batch * self.members / max(wall, 1e-9),
                "execution": self.execution.record() if self.execution is not None else None,
                "peak_memory_gib": (torch.cuda.max_memory_allocated(self.device) / 2**30
                                    if self.device.type == "cuda" else None)}

    def _log_row(self, done: int, log: "_CsvLog | None", images_per_s: float, wall_s: float) -> str:
        """Record a log row (history and ``log.csv``), reset the sums, and return the progress note."""
        losses, norms = self._mean_since_last_row()
        self._reset_sums()
        self.history.append([done, *losses])
        loss, norm = float(np.mean(losses)), float(np.mean(norms))
        if log is not None:
            row = {"step": done, "images": done * self.config.batch, "loss": loss, "lr": self.config.lr_at(done - 1),
                   "grad_norm": norm, "images_per_s": images_per_s, "wall_s": wall_s,
                   "epoch": done * self.config.batch / self.counts[0] if self.members == 1 else ""}
            if self.members > 1:
                row.update({f"loss_{m}": v for m, v in enumerate(losses)})
            log.write(row)
        return f"loss {loss:.4g}  {images_per_s:,.0f} img/s"


class _CsvLog:
    """``log.csv``: one row per log interval. On resume, rows after the checkpoint's step are dropped first."""

    def __init__(self, path: Path, resume_step: int, members: int) -> None:
        self.path = path
        fields = list(LOG_FIELDS) + ([f"loss_{m}" for m in range(members)] if members > 1 else [])
        rows: list[dict[str, str]] = []
        if path.exists():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
        self._fh = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=fields)

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: (f"{v:.7g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
