"""The training loop: one :class:`Trainer` per process, exact resume, divergence detection, logging.

Everything random in a step is a function of (seed, step) or of saved state, which is what makes resume exact:

* data order: :class:`~mogsim.training.data_order.DataOrder` (seeded per-epoch permutations);
* noise levels, noise and flips: drawn for the whole global batch from a generator seeded by (seed, step), then
  sliced per rank, so the run does not depend on how many processes share the batch;
* dropout: the global torch generator, seeded per rank and saved in checkpoints.

Per step: loss (EDM's objective: sum over coordinates, mean over the batch) -> backward (DDP averages gradients) ->
gradient norm (and clipping, if on) -> Adam with the warmed-up learning rate -> EMA update. Losses and a
"first non-finite step" marker stay on the device and are read at log rows only (no per-step sync); a non-finite
loss or gradient raises :class:`TrainingDiverged` naming the first bad step, before any checkpoint is written.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..io import atomic_path
from ..nets import PreconditionedDenoiser, build_from_config, count_parameters, make_precond
from .checkpoint import (capture_rng_state, checkpoint_path, load_checkpoint, prune_checkpoints,
                         restore_rng_state, save_checkpoint)
from .config import RuntimeOptions, TrainConfig
from .data_order import DataOrder
from .distributed import DistContext
from .ema import EMA
from .losses import Loss, make_loss, per_sample_loss
from .progress import TrainProgress

CHECKPOINT_FORMAT = "mogsim-train-checkpoint"
LOG_FIELDS = ("step", "images", "epoch", "loss", "lr", "grad_norm", "images_per_s", "wall_s")
_NOISE_TAG = 0x6E6F_6973
_DROPOUT_TAG = 0x6472_6F70
_INDEX_CHUNK_STEPS = 256


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; ``step`` is the first 0-based step where it did."""

    def __init__(self, step: int, images: int) -> None:
        self.step, self.images = step, images
        super().__init__(f"training diverged: non-finite loss or gradient at step {step} (0-based; after "
                         f"{images} images); lower --lr, set --grad-clip, or use --no-bf16; the last checkpoint "
                         "was kept")


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, step, tag...), via NumPy's SeedSequence hashing."""
    a, b = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32)
    return ((int(a) << 32) | int(b)) & ((1 << 63) - 1)


@contextlib.contextmanager
def float32_mode(device: torch.device, tf32: bool) -> Iterator[None]:
    """Set TF32 for matmuls and cuDNN convolutions explicitly (PyTorch's cuDNN default is TF32 on) and
    cuDNN autotuning on CUDA; restore the previous settings afterwards."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = old


class TrainStep(nn.Module):
    """``forward(y, sigma, noise) -> (B,) per-sample losses``: the module DDP wraps."""

    def __init__(self, denoiser: PreconditionedDenoiser, loss: Loss) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.loss = loss

    def forward(self, y: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return per_sample_loss(self.denoiser.denoise, self.loss, y, sigma, noise)


class Trainer:
    """Trains ``config.net`` on ``data`` (N, *sample_shape): uint8 pixels (mapped to [-1, 1]) or floats.

    Use :meth:`fit` for a run, or :meth:`train_step` / :meth:`forward_backward` for single steps (tests,
    benchmarks). In a multi-process job every rank builds its own Trainer with the same arguments.
    """

    def __init__(self, config: TrainConfig, data: torch.Tensor, *, runtime: RuntimeOptions | None = None,
                 ctx: DistContext | None = None) -> None:
        self.config = config
        self.runtime = runtime or RuntimeOptions()
        self.ctx = ctx or DistContext()
        device = self.device = self.ctx.device
        if not isinstance(data, torch.Tensor) or data.ndim < 2 or data.shape[0] < 1:
            raise InputError("training data must be a tensor (N, *sample_shape) with N >= 1")
        if data.dtype != torch.uint8 and not data.is_floating_point():
            raise InputError(f"training data has dtype {data.dtype}; pass uint8 pixels or floats")
        want = tuple(config.net["sample_shape"])
        if tuple(data.shape[1:]) != want:
            raise InputError(f"training data has sample shape {tuple(data.shape[1:])} but the network expects "
                             f"{want}; build the network config with sample_shape={tuple(data.shape[1:])}")
        if config.batch % self.ctx.world_size:
            raise InputError(f"--batch {config.batch} must be divisible by the number of processes "
                             f"({self.ctx.world_size})")
        if config.xflip and data.ndim != 4:
            raise InputError("--xflip needs image data (N, C, H, W)")
        self.local_batch = config.batch // self.ctx.world_size
        self.sample_shape = want
        self.coords = math.prod(want)
        self.images_4d = data.ndim == 4
        self.channels_last = bool(self.runtime.channels_last and self.images_4d)
        self.data = data.to(device)
        self.num_items = int(data.shape[0])

        torch.manual_seed(config.seed)  # the same initial weights on every rank
        net = build_from_config(config.net).to(device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.precond = make_precond(config.precond, sigma_data=config.sigma_data)
        self.denoiser = PreconditionedDenoiser(net, self.precond)
        self.loss = make_loss(config.precond, sigma_data=config.sigma_data)
        self.ema = EMA(net, config.ema_halflife_images, config.ema_rampup_ratio)
        self.optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=config.adam_betas,
                                          eps=config.adam_eps, fused=device.type == "cuda")
        self.num_parameters = count_parameters(net)
        if self.runtime.compile:
            net.compile()  # in place: parameter names and checkpoints stay those of the plain module
        self.step_module = TrainStep(self.denoiser, self.loss)
        self.model: nn.Module = self.step_module
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.model = DDP(self.step_module, device_ids=[device] if device.type == "cuda" else None)
        torch.manual_seed(derive_seed(config.seed, self.ctx.rank, _DROPOUT_TAG))  # dropout stream, per rank
        self.order = DataOrder(self.num_items, config.seed)
        self._index_chunk: tuple[int, torch.Tensor | None] = (0, None)
        self.step = 0

    # --- one step ---------------------------------------------------------------------------------------------
    def batch_for_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's (clean y, sigma, noise) of global batch ``step``."""
        cfg, dev = self.config, self.device
        b, lo = self.local_batch, self.ctx.rank * self.local_batch
        idx = self._global_indices(step)[lo:lo + b]
        gen = torch.Generator(device=dev)
        gen.manual_seed(derive_seed(cfg.seed, step, _NOISE_TAG))
        sigma = self.loss.sample_sigma(cfg.batch, gen, dev)[lo:lo + b]
        noise = torch.randn((cfg.batch, *self.sample_shape), generator=gen, device=dev)[lo:lo + b]
        y = self.data[idx]
        y = y.float().div_(127.5).sub_(1.0) if y.dtype == torch.uint8 else y.float()
        if cfg.xflip:
            flip = (torch.rand(cfg.batch, generator=gen, device=dev) < 0.5)[lo:lo + b]
            y = torch.where(flip.reshape(-1, 1, 1, 1), y.flip(-1), y)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
            noise = noise.contiguous(memory_format=torch.channels_last)
        return y, sigma, noise

    def _global_indices(self, step: int) -> torch.Tensor:
        """Global batch ``step``'s item indices, on the device. The index stream is uploaded for
        ``_INDEX_CHUNK_STEPS`` steps at a time, so that steps do not wait on a host-to-device copy."""
        start, chunk = self._index_chunk
        if chunk is None or not start <= step < start + chunk.shape[0]:
            batch = self.config.batch
            arr = self.order.stream(step * batch, _INDEX_CHUNK_STEPS * batch).reshape(_INDEX_CHUNK_STEPS, batch)
            self._index_chunk = start, chunk = step, torch.from_numpy(arr).to(self.device)
        return chunk[step - start]

    def forward_backward(self, step: int) -> torch.Tensor:
        """Zero the gradients, compute step ``step``'s loss on this rank's slice and backpropagate (DDP averages
        the gradients over ranks). Returns the sum of the slice's per-sample losses (detached, on the device)."""
        y, sigma, noise = self.batch_for_step(step)
        self.optimizer.zero_grad(set_to_none=True)
        ctx = (torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if self.config.bf16
               else contextlib.nullcontext())
        with ctx:
            per_sample = self.model(y, sigma, noise)
        (per_sample.mean() * self.coords).backward()
        return per_sample.detach().sum()

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (sum of this rank's per-sample losses, gradient norm), both on the device."""
        cfg = self.config
        loss_sum = self.forward_backward(step)
        params = [p for p in self.net.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        norm = torch.nn.utils.get_total_norm(grads)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(params, cfg.grad_clip, norm)
        lr = cfg.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.ema.update(self.net, (step + 1) * cfg.batch, cfg.batch)
        self.step = step + 1
        return loss_sum, norm

    # --- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint payload (collective in a multi-process job: gathers every rank's RNG state)."""
        cfg = self.config
        rng = self.ctx.all_gather_object(capture_rng_state(self.device))
        return {
            "format": CHECKPOINT_FORMAT, "version": 1,
            "step": self.step, "images": self.step * cfg.batch, "world_size": self.ctx.world_size,
            "net_config": cfg.net, "precond": {"name": cfg.precond, "sigma_data": cfg.sigma_data},
            "train_config": cfg.to_dict(),
            "net": self.net.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
            "data_order": self.order.state(self.step, cfg.batch),
            "rng": rng,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the run continues exactly where the checkpoint left it."""
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise InputError("checkpoint: not a mogsim training checkpoint")
        if ckpt["train_config"] != self.config.to_dict():
            raise InputError("checkpoint: it was written with a different training config; use its config or "
                             "start a new run")
        self.net.load_state_dict(ckpt["net"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        expected = self.order.state(self.step, self.config.batch)
        if ckpt["data_order"] != expected:
            raise InputError(f"checkpoint: data order {ckpt['data_order']} does not match this data set "
                             f"({expected}); the training subset changed")
        rng = ckpt["rng"]
        if len(rng) == self.ctx.world_size:
            restore_rng_state(rng[self.ctx.rank], self.device)
        else:  # a different number of processes: dropout streams restart from (seed, rank, step)
            torch.manual_seed(derive_seed(self.config.seed, self.ctx.rank, _DROPOUT_TAG, self.step))

    def save(self, run_dir: str | os.PathLike) -> Path | None:
        """Write ``checkpoints/ckpt-<step>.pt`` (rank 0) and prune old ones; returns the path on rank 0."""
        payload = self.state_dict()
        path = None
        if self.ctx.is_main:
            path = save_checkpoint(checkpoint_path(run_dir, self.step), payload)
            prune_checkpoints(run_dir, self.runtime.keep_checkpoints)
        self.ctx.barrier()
        return path

    def resume(self, path: str | os.PathLike) -> None:
        """Load a checkpoint file."""
        self.load_state_dict(load_checkpoint(path, map_location=self.device))

    # --- the loop ---------------------------------------------------------------------------------------------
    def fit(self, total_steps: int, run_dir: str | os.PathLike | None = None, *,
            show_progress: bool = True) -> dict[str, Any]:
        """Train from :attr:`step` to ``total_steps``; with ``run_dir``, log to ``log.csv`` and checkpoint there.

        Returns a summary (steps, images, last logged loss, mean images/s, wall time).
        """
        run_dir = Path(run_dir) if run_dir is not None else None
        log = _CsvLog(run_dir / "log.csv", self.step) if (run_dir is not None and self.ctx.is_main) else None
        try:
            return self._fit(total_steps, run_dir, log, show_progress)
        finally:
            if log is not None:
                log.close()

    def _fit(self, total_steps: int, run_dir: Path | None, log: "_CsvLog | None",
             show_progress: bool) -> dict[str, Any]:
        cfg, rt, dev = self.config, self.runtime, self.device
        loss_acc = torch.zeros((), device=dev, dtype=torch.float64)
        norm_acc = torch.zeros((), device=dev, dtype=torch.float64)
        first_bad = torch.full((), -1, device=dev, dtype=torch.int64)
        count = 0
        start_step, t_start = self.step, time.perf_counter()
        t_last, step_last = t_start, self.step
        last_loss = math.nan
        with float32_mode(dev, cfg.tf32), \
                TrainProgress(total_steps, self.step, rt.progress, enabled=show_progress and self.ctx.is_main) as bar:
            for step in range(self.step, total_steps):
                loss_sum, norm = self.train_step(step)
                loss_acc += loss_sum
                norm_acc += norm
                count += 1
                finite = torch.isfinite(loss_sum) & torch.isfinite(norm)
                first_bad = torch.where(finite | (first_bad >= 0), first_bad, torch.full_like(first_bad, step))
                bar.advance()
                done = self.step
                at_ckpt = run_dir is not None and ((rt.checkpoint_every and done % rt.checkpoint_every == 0)
                                                   or done == total_steps)
                if done % rt.log_every and not at_ckpt and done != total_steps:
                    continue
                mean_loss, mean_norm, bad = self._reduce(loss_acc, norm_acc, count, first_bad)
                if bad >= 0:
                    raise TrainingDiverged(bad, bad * cfg.batch)
                now = time.perf_counter()
                ips = (done - step_last) * cfg.batch / max(now - t_last, 1e-9)
                last_loss = mean_loss
                bar.report(done, mean_loss, ips)
                if log is not None:
                    log.write({"step": done, "images": done * cfg.batch, "epoch": done * cfg.batch / self.num_items,
                               "loss": mean_loss, "lr": cfg.lr_at(done - 1), "grad_norm": mean_norm,
                               "images_per_s": ips, "wall_s": now - t_start})
                if at_ckpt:
                    self.save(run_dir)
                loss_acc.zero_()
                norm_acc.zero_()
                count = 0
                t_last, step_last = time.perf_counter(), done
        wall = time.perf_counter() - t_start
        return {"steps": self.step, "images": self.step * cfg.batch, "steps_this_launch": self.step - start_step,
                "final_loss": last_loss if math.isfinite(last_loss) else None, "wall_s": wall,
                "images_per_s": (self.step - start_step) * cfg.batch / max(wall, 1e-9)}

    def _reduce(self, loss_acc: torch.Tensor, norm_acc: torch.Tensor, count: int,
                first_bad: torch.Tensor) -> tuple[float, float, int]:
        """Mean loss per sample and mean gradient norm since the last log row, and the first bad step (-1: none),
        over all ranks."""
        sums = torch.stack([loss_acc, torch.as_tensor(float(count * self.local_batch), device=loss_acc.device,
                                                      dtype=torch.float64)])
        self.ctx.all_reduce_(sums, "sum")
        big = torch.iinfo(torch.int64).max
        bad = torch.where(first_bad >= 0, first_bad, torch.full_like(first_bad, big)).clone()
        self.ctx.all_reduce_(bad, "min")
        bad_i = int(bad.item())
        return (float(sums[0] / sums[1]), float(norm_acc) / max(count, 1), -1 if bad_i == big else bad_i)


class _CsvLog:
    """``log.csv``: one row per log interval. On resume, rows after the checkpoint's step are dropped first."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        rows: list[dict[str, str]] = []
        if path.exists():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
        self._fh = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=LOG_FIELDS)

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: (f"{v:.7g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
