"""Train a bank of M denoisers at once on M training sets: EDM loss, Adam, EMA, fresh noise every step; resumable.

A *bank* is any ``nn.Module`` with ``members``, ``denoise(x, sigma)`` for x (M, B, n), sigma (M, B), and
``loss_weight(sigma)``: :class:`mogsim.nets.ensemble.EnsembleMLP` (M models in batched matrix products) or
:class:`SingleNetBank` (one arbitrary network, M = 1).

One step, for every member m at once: draw B indices uniformly (with replacement) from member m's N_m training
points, ``ln sigma ~ N(P_mean, P_std^2)`` (EDM), ``x = x0 + sigma eps``, loss ``lambda(sigma) ||D(x; sigma) - x0||^2``
(summed over coordinates, averaged over the batch) summed over members; Adam (element-wise, so the members stay
independent), a linear learning-rate warm-up, and an EMA of the weights with half-life
``min(ema_halflife_frac * steps, ema_rampup * step)`` steps (EDM's ramp-up). All random numbers come from one
seeded ``torch.Generator`` on the training device, saved with the state, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..conventions import EDMPrecond
from ..devices import exact_float32_matmul
from ..errors import InputError
from ..io import atomic_path

#: EDM's EMA ramp-up ratio: the half-life never exceeds this fraction of the steps taken so far.
EMA_RAMPUP = 0.05


@dataclass(frozen=True)
class TrainSpec:
    """The training recipe; every field is recorded with the results."""

    steps: int = 3000
    batch: int = 256
    lr: float = 1e-3
    lr_warmup_frac: float = 0.05
    ema_halflife_frac: float = 0.05
    p_mean: float = -1.2
    p_std: float = 1.2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8

    def check(self) -> None:
        """Raise :class:`InputError` for values no run can use."""
        if int(self.steps) != self.steps or self.steps < 1:
            raise InputError(f"--steps {self.steps}; pass an integer >= 1")
        if int(self.batch) != self.batch or self.batch < 1:
            raise InputError(f"--batch {self.batch}; pass an integer >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr {self.lr}; pass a positive learning rate, e.g. 1e-3")
        if not 0 <= self.lr_warmup_frac < 1 or not 0 < self.ema_halflife_frac <= 1:
            raise InputError("lr_warmup_frac must be in [0, 1) and ema_halflife_frac in (0, 1]")
        if not self.p_std > 0:
            raise InputError(f"p_std {self.p_std}; pass a positive value")


@dataclass
class TrainOutcome:
    """What :func:`train_bank` returns."""

    ema: nn.Module
    steps_done: int
    complete: bool
    seconds: float
    loss_history: list[list[float]] = field(default_factory=list)  # rows: [step, loss_member_0, ...]


class SingleNetBank(nn.Module):
    """One network ``F(x, c_noise)`` (e.g. :class:`mogsim.nets.unet.VectorUNet`) as a bank of M = 1 with EDM
    preconditioning; :meth:`member` gives the :class:`mogsim.denoiser.Denoiser`."""

    def __init__(self, net: nn.Module, sigma_data: float, dim: int) -> None:
        super().__init__()
        self.net, self.members, self.dim = net, 1, int(dim)
        self.precond = EDMPrecond(sigma_data=float(sigma_data))

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        """``D(x; sigma)`` for x (1, B, n), sigma (1, B)."""
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xs, s = x[0].to(dtype), sigma[0].to(dtype)[:, None]
        p = self.precond
        f = self.net((p.c_in(s) * xs).to(torch.float32), p.c_noise(s)[:, 0].to(torch.float32))
        return (p.c_skip(s) * xs + p.c_out(s) * f.to(dtype)).to(x.dtype)[None]

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.precond.loss_weight(sigma)

    def member(self, index: int) -> Callable[[torch.Tensor, Any], torch.Tensor]:
        """The network as a denoiser ``D(x, sigma)`` (x (B, n), sigma float or (B,)), without gradients."""
        if index != 0:
            raise InputError(f"member {index} out of range 0..0")

        def d(x: torch.Tensor, sigma: Any) -> torch.Tensor:
            sig = torch.as_tensor(sigma, device=x.device, dtype=torch.float64)
            sig = sig.expand(x.shape[0]) if sig.ndim == 0 else sig
            with torch.no_grad():
                return self.denoise(x.reshape(1, x.shape[0], -1), sig.reshape(1, -1)).reshape(x.shape)

        return d


def pad_training_sets(sets: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack M training sets (N_m, n) into a zero-padded float32 (M, max N, n) tensor and the counts (M,)."""
    n_max = max(int(s.shape[0]) for s in sets)
    dim = int(sets[0].shape[1])
    data = torch.zeros(len(sets), n_max, dim, dtype=torch.float32)
    for m, s in enumerate(sets):
        data[m, : s.shape[0]] = s.to(torch.float32)
    counts = torch.tensor([int(s.shape[0]) for s in sets], dtype=torch.float32)
    return data.to(device), counts.to(device)


class BankAdam:
    """Adam (Kingma & Ba; the same update as ``torch.optim.Adam`` without weight decay or amsgrad) on a list of
    tensors with ``torch._foreach`` operations.

    Written out because ``torch.optim``'s first step imports TorchDynamo, which costs several seconds on a small
    CPU: a large share of a 30-second run.
    """

    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float], eps: float) -> None:
        self.params = params
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """One update with learning rate ``lr`` from the parameters' ``.grad``."""
        b1, b2 = self.betas
        grads = [p.grad for p in self.params]
        self.t += 1
        torch._foreach_lerp_(self.exp_avg, grads, 1.0 - b1)
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1.0 - b2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(1.0 - b2**self.t))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -lr / (1.0 - b1**self.t))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        for dst, src in zip(self.exp_avg + self.exp_avg_sq, list(state["exp_avg"]) + list(state["exp_avg_sq"])):
            dst.copy_(src)


def _ema_beta(step: int, spec: TrainSpec) -> float:
    half = min(spec.ema_halflife_frac * spec.steps, EMA_RAMPUP * step)
    return 0.5 ** (1.0 / max(half, 1e-8))


def _lr(step: int, spec: TrainSpec) -> float:
    warm = spec.lr_warmup_frac * spec.steps
    return spec.lr * min(1.0, (step + 1) / warm) if warm > 0 else spec.lr


def train_bank(bank: nn.Module, sets: list[torch.Tensor], spec: TrainSpec, *, seed: int,
               device: torch.device, state_path: str | Path | None = None, checkpoint_every_s: float = 60.0,
               deadline: float | None = None, progress: Callable[[int], None] | None = None,
               log_every: int = 50) -> TrainOutcome:
    """Train ``bank`` (M members) on ``sets`` (M tensors (N_m, n)) for ``spec.steps`` steps; return the EMA bank.

    With ``state_path`` the full state (weights, EMA, Adam, generator, step, losses) is saved there atomically every
    ``checkpoint_every_s`` seconds, when ``deadline`` (a ``time.monotonic()`` value) passes and on Ctrl-C, and a
    later call resumes from it. ``complete`` is False when the deadline stopped training early.
    """
    spec.check()
    if len(sets) != bank.members:
        raise InputError(f"{len(sets)} training sets for a bank of {bank.members} members")
    bank = bank.to(device)
    ema = copy.deepcopy(bank).requires_grad_(False)
    params = [p for p in bank.parameters() if p.requires_grad]
    opt = BankAdam(params, spec.adam_betas, spec.adam_eps)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    step, history, earlier_seconds = 0, [], 0.0
    path = Path(state_path) if state_path is not None else None
    if path is not None and path.exists():
        state = torch.load(path, map_location=device, weights_only=False)
        bank.load_state_dict(state["bank"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"].cpu())
        step, history = int(state["step"]), list(state["history"])
        earlier_seconds = float(state.get("seconds", 0.0))
        if progress is not None and step:
            progress(step)

    def save() -> None:
        if path is None:
            return
        with atomic_path(path) as tmp:
            torch.save({"bank": bank.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "gen": gen.get_state(), "step": step, "history": history, "spec": asdict(spec),
                        "seconds": earlier_seconds + time.monotonic() - start}, tmp)

    start = time.monotonic()
    data, counts = pad_training_sets(sets, device)
    members, dim, batch = data.shape[0], data.shape[2], spec.batch
    rows = torch.arange(members, device=device)[:, None]
    ema_params = [p for p in ema.parameters()]
    all_params = list(bank.parameters())
    running = torch.zeros(members, device=device, dtype=torch.float64)
    running_count = 0
    last_save = start
    complete = True
    try:
        with exact_float32_matmul():
            while step < spec.steps:
                idx = (torch.rand(members, batch, generator=gen, device=device) * counts[:, None]).long()
                x0 = data[rows, idx]  # (M, B, n)
                sigma = torch.exp(torch.randn(members, batch, generator=gen, device=device) * spec.p_std
                                  + spec.p_mean)
                noise = torch.randn(members, batch, dim, generator=gen, device=device)
                denoised = bank.denoise(x0 + sigma[..., None] * noise, sigma)
                per_sample = bank.loss_weight(sigma) * ((denoised - x0) ** 2).sum(dim=2)
                per_member = per_sample.mean(dim=1)
                opt.zero_grad()
                per_member.sum().backward()
                opt.step(_lr(step, spec))
                step += 1
                with torch.no_grad():
                    torch._foreach_lerp_(ema_params, [p.detach() for p in all_params], 1.0 - _ema_beta(step, spec))
                    running += per_member.detach().to(torch.float64) / dim
                running_count += 1
                if step % log_every == 0 or step == spec.steps:
                    history.append([step] + (running / running_count).tolist())
                    running.zero_()
                    running_count = 0
                if progress is not None:
                    progress(1)
                now = time.monotonic()
                if deadline is not None and now >= deadline and step < spec.steps:
                    complete = False
                    break
                if path is not None and now - last_save >= checkpoint_every_s:
                    save()
                    last_save = now
    except KeyboardInterrupt:
        save()
        raise
    if not complete:
        save()
    return TrainOutcome(ema=ema.eval(), steps_done=step, complete=complete,
                        seconds=earlier_seconds + time.monotonic() - start, loss_history=history)
