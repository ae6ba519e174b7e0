"""The training engine: one :class:`Trainer` per process for M independent models at once, exact resume.

**Members.** The trainer trains M models ("members") on M training sets at once: a batched network whose
parameters all carry a leading member axis (the :class:`~mogsim.nets.MLP` with ``members=M``), or, for M = 1, any
network (a UNet). Each step draws for every member B items of its own set, noise levels (M, B) from the loss object
and noise (M, B, *shape). Members never interact: the per-member losses are summed for one backward pass, gradients
are clipped per member, Adam is element-wise and the EMA is too, so member m's update depends only on its own data,
weights and optimizer state and on row m of the step's random draws. Trained alone (M = 1) on the same data and fed
the same rows, a member follows the same trajectory (the same losses; weights to float32 rounding, tested).

**Randomness**, all a function of (seed, step) or of saved state, which makes resume exact:

* data order: one :class:`~mogsim.training.data_order.DataOrder` per member (its own N_m), seeded from
  ``(seed, "data-order", m)``; indices are uploaded for many steps at a time so steps do not wait on the host;
* noise levels, noise and flips: drawn for the whole global batch from a generator seeded by
  ``(seed, "training-noise", step)``, then sliced per rank, so the run does not depend on the number of processes;
* initial weights ``(seed, "init")``; dropout: the global torch generator, seeded per rank and saved in checkpoints.

**A step** (written for capture by ``torch.compile``/CUDA graphs later: no host sync, losses accumulated on the
device): loss (EDM's objective: sum over coordinates, mean over the batch, summed over members) -> backward (DDP
averages gradients over ranks) -> per-member gradient norms (and clipping, if on) -> Adam with the warmed-up
learning rate -> EMA update. The per-member loss sums and a "first non-finite step" marker are read at log rows and
checkpoints only; a non-finite loss or gradient raises :class:`TrainingDiverged` naming the first bad step, before
any checkpoint of a diverged state is written.
"""

from __future__ import annotations

import contextlib
import csv
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..denoiser import ProgressFactory
from ..devices import float32_precision
from ..errors import InputError
from ..io import atomic_path
from ..nets import PreconditionedDenoiser, build_from_config, count_parameters
from ..nets.precond import per_member
from ..progress import silent
from ..runs import RunFolder, load_checkpoint, save_checkpoint
from ..seeds import derive_seed
from .checkpoint import FORMAT, VERSION, capture_rng_state, check_format, restore_rng_state
from .config import RuntimeOptions, TrainConfig
from .data_order import DataOrder
from .distributed import DistContext
from .ema import EMA
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
                         f"{images} images); lower lr, set grad_clip, or turn off bf16; {kept}")


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
    member; uint8 pixels (mapped to [-1, 1]) or finite floats.

    Use :meth:`fit` for a run, or :meth:`train_step` / :meth:`forward_backward` for single steps (tests,
    benchmarks). In a multi-process job every rank builds its own Trainer with the same arguments.
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
        if self.runtime.compile:
            net.compile()  # in place: parameter names and checkpoints stay those of the plain module
        self.step_module = TrainStep(self.denoiser, self.loss, channels_last=channels_last)
        self.model: nn.Module = self.step_module
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP  # only multi-process jobs need it

            self.model = DDP(self.step_module, device_ids=[device] if device.type == "cuda" else None)
        torch.manual_seed(derive_seed(config.seed, "dropout", self.ctx.rank))  # dropout stream, per rank
        self.orders = [DataOrder(n, derive_seed(config.seed, "data-order", m)) for m, n in enumerate(self.counts)]
        self._chunk_steps = max(1, min(_INDEX_CHUNK_STEPS, _INDEX_CHUNK_ITEMS // (self.members * config.batch)))
        self._index_chunk: tuple[int, torch.Tensor | None] = (0, None)
        self._noise_generator = torch.Generator(device=device)  # reseeded from (seed, step) at every step
        self.step = 0
        self.checkpoint_step: int | None = None
        self.history: list[list[float]] = []
        self._reset_sums()

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
        """Global batch ``step``'s item indices (M, B), on the device; uploaded many steps at a time."""
        start, chunk = self._index_chunk
        if chunk is None or not start <= step < start + chunk.shape[0]:
            batch, steps = self.config.batch, self._chunk_steps
            arr = np.stack([o.stream(step * batch, steps * batch).reshape(steps, batch) for o in self.orders], 1)
            self._index_chunk = start, chunk = step, torch.from_numpy(arr).to(self.device)
        return chunk[step - start]

    def batch_for_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's (clean y (M, b, *shape), sigma (M, b), noise (M, b, *shape)) of global batch ``step``."""
        cfg, dev, m = self.config, self.device, self.members
        b, lo = self.local_batch, self.ctx.rank * self.local_batch
        idx = self._global_indices(step)[:, lo:lo + b]
        gen = self._noise_generator
        gen.manual_seed(derive_seed(cfg.seed, "training-noise", step))
        sigma = self.loss.sample_sigma((m, cfg.batch), gen, dev)[:, lo:lo + b]
        noise = torch.randn((m, cfg.batch, *self.sample_shape), generator=gen, device=dev)[:, lo:lo + b]
        y = self.data[self._rows, idx]
        y = y.float().div_(127.5).sub_(1.0) if y.dtype == torch.uint8 else y.float()
        if cfg.xflip:
            flip = (torch.rand((m, cfg.batch), generator=gen, device=dev) < 0.5)[:, lo:lo + b]
            y = torch.where(flip.reshape(m, b, 1, 1, 1), y.flip(-1), y)
        return y, sigma, noise

    # --- one step ---------------------------------------------------------------------------------------------
    def forward_backward(self, step: int) -> torch.Tensor:
        """Zero the gradients, compute step ``step``'s loss on this rank's slice and backpropagate (DDP averages
        the gradients over ranks). Returns each member's sum of per-sample losses (M,) (detached, on the device)."""
        y, sigma, noise = self.batch_for_step(step)
        self.optimizer.zero_grad()
        autocast = (torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if self.config.bf16
                    else contextlib.nullcontext())
        with autocast:
            per_sample = self.model(y, sigma, noise)
        (per_sample.sum() * (self.coords / per_sample.shape[1])).backward()  # sum over members of batch means
        return per_sample.detach().sum(dim=1)

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (per-member sums of this rank's per-sample losses (M,), per-member gradient
        norms (M,)), both on the device."""
        cfg = self.config
        loss_sum = self.forward_backward(step)
        grads = [p.grad for p in self.optimizer.params if p.grad is not None]
        norms = member_grad_norms(grads, self.members)
        if cfg.grad_clip > 0:
            clip_member_grads_(grads, norms, cfg.grad_clip)
        self.optimizer.step(cfg.lr_at(step))
        after_step = getattr(self.net, "after_optimizer_step", None)  # e.g. re-orthonormalise constrained weights
        if after_step is not None:
            after_step()
        self.ema.update(self.net, (step + 1) * cfg.batch, cfg.batch)
        self.step = step + 1
        return loss_sum, norms

    # --- losses between log rows ------------------------------------------------------------------------------
    def _reset_sums(self) -> None:
        self._sums = torch.zeros(2, self.members, device=self.device, dtype=torch.float64)  # loss, grad norm
        self._count = 0
        self._first_bad = torch.full((), -1, device=self.device, dtype=torch.int64)

    def _accumulate(self, step: int, loss_sum: torch.Tensor, norms: torch.Tensor) -> None:
        self._sums[0] += loss_sum
        self._sums[1] += norms
        self._count += 1
        finite = torch.isfinite(loss_sum.sum() + norms.sum())  # a NaN or inf anywhere makes the sum non-finite
        self._first_bad = torch.where(finite | (self._first_bad >= 0), self._first_bad, step)

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
        """Restore from :meth:`state_dict`; the run continues exactly where the checkpoint left it."""
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

        ``deadline`` (a ``time.monotonic()`` value) stops early with a checkpoint; Ctrl-C stops at the next step
        boundary with a checkpoint, then raises ``KeyboardInterrupt``. Returns a summary: steps, images, whether
        the budget was reached (``complete``), the last logged loss (mean over members and per member), mean
        images/s and wall time.
        """
        run_dir = Path(run_dir) if run_dir is not None else None
        log = _CsvLog(run_dir / "log.csv", self.step, self.members) if run_dir and self.ctx.is_main else None
        advance = progress(description, total_steps)
        if self.step:
            advance(self.step)
        stop = _StopRequest()
        try:
            with float32_mode(self.device, self.config.tf32), stop.installed(not self.ctx.distributed):
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
            loss_sum, norms = self.train_step(self.step)
            self._accumulate(self.step - 1, loss_sum, norms)
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
        wall = time.perf_counter() - t_start
        last = self.history[-1][1:] if self.history else []
        return {"steps": self.step, "images": self.step * cfg.batch, "steps_this_launch": self.step - start_step,
                "complete": complete, "members": self.members,
                "final_loss": float(np.mean(last)) if last and all(map(math.isfinite, last)) else None,
                "final_loss_per_member": last, "wall_s": wall,
                "images_per_s": (self.step - start_step) * cfg.batch * self.members / max(wall, 1e-9)}

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
