"""A prototype training step for issue 11: the Trainer's maths, structured so one CUDA graph replays a whole step.

:class:`FastStep` reproduces :meth:`mogsim.training.Trainer.train_step` for one process (the same data order,
per-(seed, step) noise, VP/EDM loss through :class:`~mogsim.training.TrainStep`, gradient norm, Adam with the
warmed-up learning rate, EMA with EDM's ramp-up) for one network or for M stacked members, and adds what graph
capture needs:

* static device buffers for everything a step reads: the batch indices (uploaded 256 steps at a time and copied
  into place before each step), the learning rate and the EMA weight as 0-d tensors filled from the host formulas
  (``TrainConfig.lr_at``, ``EMA.beta``), so they are the Trainer's numbers exactly;
* noise from a generator reseeded from (seed, step) before every step and registered with the graph, so a replay
  draws the same numbers as an eager step (checked on the GPU by :func:`graph_matches_eager`);
* fused Adam with ``capturable=True`` and a tensor learning rate; the EMA in three foreach operations with a tensor
  weight;
* no host synchronisation: losses and gradient norms are summed on the device and read when asked for;
* warm-up steps (cuDNN autotuning, compilation) run on a snapshot that is restored afterwards, so capturing does
  not change the trajectory.

Members (``members=M``): M networks with their own initial weights, data, data order and noise, trained as one
vectorised model (``torch.func.stack_module_state`` + ``vmap(functional_call)``: batched convolutions become
grouped convolutions); Adam and the EMA are elementwise, so one optimizer over the stacked tensors is M
independent optimizers. Gradient clipping is per model and is not implemented for members.

This is a benchmark prototype: the Trainer (mogsim/training, being rewritten for issue 9) is where it belongs.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from mogsim.nets import PreconditionedDenoiser, build_from_config, make_precond
from mogsim.training import EMA, DataOrder, TrainConfig, TrainStep, make_loss
from mogsim.training.loop import _NOISE_TAG, derive_seed, float32_mode

_INDEX_CHUNK_STEPS = 256
PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class StepMode:
    """How a step executes: arithmetic (fp32 | tf32 | bf16 autocast), memory layout, compilation, graph replay."""

    precision: str = "bf16"
    channels_last: bool = False
    compile: bool = False
    graph: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {PRECISIONS}")

    @property
    def name(self) -> str:
        parts = [self.precision] + [flag for flag, on in (("cl", self.channels_last), ("compile", self.compile),
                                                          ("graph", self.graph)) if on]
        return "+".join(parts)

    @classmethod
    def parse(cls, name: str) -> "StepMode":
        """``"bf16+cl+graph"`` -> StepMode("bf16", channels_last=True, graph=True)."""
        precision, *flags = name.split("+")
        unknown = set(flags) - {"cl", "compile", "graph"}
        if unknown:
            raise ValueError(f"mode {name!r}: unknown flag(s) {sorted(unknown)}")
        return cls(precision, "cl" in flags, "compile" in flags, "graph" in flags)


def matmul_precision(mode: StepMode, device: torch.device) -> ContextManager[None]:
    """The Trainer's ``float32_mode`` for a mode: TF32 only for ``tf32``, cuDNN autotuning on CUDA."""
    return float32_mode(device, mode.precision == "tf32")


class FastStep:
    """One training step of ``config`` on ``data`` ((N, *shape), or (M, N, *shape) with ``members=M``)."""

    def __init__(self, config: TrainConfig, data: torch.Tensor, mode: StepMode, device: torch.device, *,
                 members: int | None = None, warmup_steps: int = 3) -> None:
        if mode.graph and device.type != "cuda":
            raise ValueError("graph replay needs CUDA")
        if members is not None and (mode.compile or mode.channels_last or config.grad_clip > 0):
            raise ValueError("members: compile, channels_last and gradient clipping are not prototyped")
        self.config, self.mode, self.device, self.members = config, mode, device, members
        self.batch = config.batch
        self.sample_shape = tuple(config.net["sample_shape"])
        self.coords = int(torch.tensor(self.sample_shape).prod())
        count = members or 1
        self.data = (data.unsqueeze(0) if members is None else data).to(device)  # (members, N, *shape)
        if tuple(self.data.shape[2:]) != self.sample_shape or self.data.shape[0] != count:
            raise ValueError(f"data of shape {tuple(data.shape)} does not fit {count} member(s) of sample shape "
                             f"{self.sample_shape}")
        self.num_items = int(self.data.shape[1])
        self.seeds = [config.seed + m for m in range(count)]
        self.orders = [DataOrder(self.num_items, s) for s in self.seeds]
        self.channels_last = mode.channels_last and len(self.sample_shape) == 3

        precond = make_precond(config.precond, sigma_data=config.sigma_data)
        self.loss = make_loss(config.precond, sigma_data=config.sigma_data)
        nets = []
        for s in self.seeds:
            torch.manual_seed(s)  # as the Trainer: weights from the run's seed
            net = build_from_config(config.net).to(device)
            nets.append(net.to(memory_format=torch.channels_last) if self.channels_last else net)
        if members is None:
            self.net = nets[0]
            if mode.compile:
                self.net.compile()
            self.step_module = TrainStep(PreconditionedDenoiser(self.net, precond), self.loss)
            self.params = list(self.net.parameters())
        else:
            stacked, buffers = stack_module_state(nets)
            self.params = [p.requires_grad_(True) for p in stacked.values()]
            base = TrainStep(PreconditionedDenoiser(copy.deepcopy(nets[0]).to("meta"), precond), self.loss)
            names = ["denoiser.net." + k for k in stacked]
            buffer_names = ["denoiser.net." + k for k in buffers]

            def member_loss(params: Sequence[torch.Tensor], bufs: Sequence[torch.Tensor], y: torch.Tensor,
                            sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
                state = dict(zip(names, params)) | dict(zip(buffer_names, bufs))
                return functional_call(base, state, (y, sigma, noise))

            self.buffers = list(buffers.values())
            self._vmapped = vmap(member_loss, randomness="different")
        self.ema_params = [p.detach().clone() for p in self.params]
        self.ema_rule = EMA(nn.Module(), config.ema_halflife_images, config.ema_rampup_ratio)

        cuda = device.type == "cuda"
        lr: float | torch.Tensor = torch.tensor(config.lr, device=device) if cuda else config.lr
        self.optimizer = torch.optim.Adam(self.params, lr=lr, betas=config.adam_betas, eps=config.adam_eps,
                                          fused=True, capturable=cuda)
        self.lr_t = lr if isinstance(lr, torch.Tensor) else None
        self.ema_weight = torch.zeros((), device=device)
        self.generators = [torch.Generator(device=device) for _ in self.seeds]
        self.idx = torch.zeros((count, self.batch), dtype=torch.long, device=device)
        self._chunks: list[tuple[int, torch.Tensor | None]] = [(0, None)] * count
        self.loss_sum = torch.zeros(count, device=device, dtype=torch.float64)
        self.norm_sum = torch.zeros(count, device=device, dtype=torch.float64)
        self.last_loss = torch.zeros(count, device=device)  # mean per-sample loss of the latest step
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmup_seconds = 0.0
        if mode.graph or mode.compile:
            self._warm_up(warmup_steps)
        if mode.graph:
            self._capture()

    # --- what a step reads ------------------------------------------------------------------------------------
    def _prepare(self, step: int) -> None:
        """Host side of step ``step``: indices, learning rate, EMA weight and noise seeds into their buffers."""
        cfg = self.config
        for m, order in enumerate(self.orders):
            start, chunk = self._chunks[m]
            if chunk is None or not start <= step < start + chunk.shape[0]:
                arr = order.stream(step * self.batch, _INDEX_CHUNK_STEPS * self.batch)
                chunk = torch.from_numpy(arr.reshape(_INDEX_CHUNK_STEPS, self.batch)).to(self.device)
                self._chunks[m] = start, chunk = step, chunk
            self.idx[m].copy_(chunk[step - start])
        lr = cfg.lr_at(step)
        if self.lr_t is not None:
            self.lr_t.fill_(lr)
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.ema_weight.fill_(1.0 - self.ema_rule.beta((step + 1) * self.batch, self.batch))
        for gen, seed in zip(self.generators, self.seeds):
            gen.manual_seed(derive_seed(seed, step, _NOISE_TAG))

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(y, sigma, noise) with a leading member axis; drawn exactly as the Trainer draws them."""
        cfg, dev = self.config, self.device
        ys, sigmas, noises = [], [], []
        for m, gen in enumerate(self.generators):
            sigma = self.loss.sample_sigma(cfg.batch, gen, dev)
            noise = torch.randn((cfg.batch, *self.sample_shape), generator=gen, device=dev)
            y = self.data[m].index_select(0, self.idx[m])
            y = y.float().div_(127.5).sub_(1.0) if y.dtype == torch.uint8 else y.float()
            if cfg.xflip:
                flip = torch.rand(cfg.batch, generator=gen, device=dev) < 0.5
                y = torch.where(flip.reshape(-1, 1, 1, 1), y.flip(-1), y)
            ys.append(y)
            sigmas.append(sigma)
            noises.append(noise)
        if self.members is None:
            y, sigma, noise = ys[0], sigmas[0], noises[0]
            if self.channels_last:
                y = y.contiguous(memory_format=torch.channels_last)
                noise = noise.contiguous(memory_format=torch.channels_last)
            return y, sigma, noise
        return torch.stack(ys), torch.stack(sigmas), torch.stack(noises)

    # --- the step ---------------------------------------------------------------------------------------------
    def _body(self, zero_grad: bool = True) -> None:
        """Forward, backward, gradient norm (and clipping), Adam, EMA, loss sums: all on the device."""
        if zero_grad:
            self.optimizer.zero_grad(set_to_none=True)
        y, sigma, noise = self._batch()
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)
                    if self.mode.precision == "bf16" else contextlib.nullcontext())
        with autocast:
            if self.members is None:
                per_sample = self.step_module(y, sigma, noise).unsqueeze(0)
            else:
                per_sample = self._vmapped(self.params, self.buffers, y, sigma, noise)
        (per_sample.mean(dim=1).sum() * self.coords).backward()
        grads = [p.grad for p in self.params]
        if self.members is None:
            norm = torch.nn.utils.get_total_norm(grads).reshape(1)
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grads_with_norm_(self.params, self.config.grad_clip, norm[0])
        else:
            norm = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
        self.optimizer.step()
        with torch.no_grad():
            # ema += w (p - ema) with w a device tensor: _foreach_lerp_ takes its weight only as a host number
            # (a 0-d tensor would be read with .item(), a sync that graph capture forbids).
            step = torch._foreach_sub(self.params, self.ema_params)
            torch._foreach_mul_(step, self.ema_weight)
            torch._foreach_add_(self.ema_params, step)
            per_sample = per_sample.detach()
            self.loss_sum.add_(per_sample.sum(dim=1))
            self.norm_sum.add_(norm.detach())
            self.last_loss.copy_(per_sample.mean(dim=1))

    def step(self, step: int) -> None:
        """Run training step ``step`` (0-based)."""
        self._prepare(step)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._body()

    # --- warm-up and capture ----------------------------------------------------------------------------------
    def _state_tensors(self) -> list[torch.Tensor]:
        opt = [t for st in self.optimizer.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
        return self.params + self.ema_params + opt

    def _warm_up(self, steps: int) -> None:
        """Run ``steps`` eager steps on a side stream (autotuning, compilation, lazy allocations), then restore the
        weights, EMA, optimizer state and sums: warming up leaves the trajectory unchanged."""
        import time

        fresh = not self.optimizer.state
        saved = [t.detach().clone() for t in self._state_tensors()]
        t0 = time.perf_counter()
        stream = torch.cuda.Stream() if self.device.type == "cuda" else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for k in range(steps):
                self._prepare(k)
                self._body()
        if stream is not None:
            torch.cuda.current_stream().wait_stream(stream)
            torch.cuda.synchronize()
        self.warmup_seconds = time.perf_counter() - t0
        with torch.no_grad():
            for t, s in zip(self._state_tensors(), saved):
                t.copy_(s)
            if fresh:  # Adam's first step starts from zero moments and step 0: the same as a fresh optimizer
                for st in self.optimizer.state.values():
                    for t in st.values():
                        if isinstance(t, torch.Tensor):
                            t.zero_()
            for t in (self.loss_sum, self.norm_sum, self.last_loss):
                t.zero_()

    def _capture(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        for gen in self.generators:
            graph.register_generator_state(gen)
        self._prepare(0)
        with torch.cuda.graph(graph):
            self._body(zero_grad=False)
        self.graph = graph

    # --- reading results --------------------------------------------------------------------------------------
    def read_sums(self) -> tuple[list[float], list[float]]:
        """(loss sum, gradient-norm sum) per member since the last read, then reset (one host sync)."""
        loss, norm = self.loss_sum.tolist(), self.norm_sum.tolist()
        self.loss_sum.zero_()
        self.norm_sum.zero_()
        return loss, norm


def draw_inputs(step: FastStep, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (y, sigma, noise) eager code draws for step ``k`` (for comparison with a graph replay)."""
    step._prepare(k)
    return step._batch()


def graph_matches_eager(make: Callable[[bool], FastStep], steps: int = 3) -> dict[str, Any]:
    """Run ``steps`` steps eagerly and by graph replay from the same start; compare losses and final weights.

    ``make(graph)`` builds a FastStep with or without graph replay. Bitwise-equal losses mean the graph draws the
    same noise and data as eager code; the weights can differ by kernel rounding only.
    """
    eager, graphed = make(False), make(True)
    out: dict[str, Any] = {"steps": steps, "loss_eager": [], "loss_graph": []}
    for k in range(steps):
        eager.step(k)
        graphed.step(k)
        out["loss_eager"].append(eager.last_loss.tolist())
        out["loss_graph"].append(graphed.last_loss.tolist())
    num = sum(float((a - b).double().norm() ** 2) for a, b in zip(eager.params, graphed.params)) ** 0.5
    den = sum(float(a.double().norm() ** 2) for a in eager.params) ** 0.5
    out["first_loss_bitwise_equal"] = out["loss_eager"][0] == out["loss_graph"][0]
    out["loss_max_rel_diff"] = max(abs(a - b) / abs(a) for ra, rb in zip(out["loss_eager"], out["loss_graph"])
                                   for a, b in zip(ra, rb))
    out["weights_rel_diff"] = num / den
    return out
