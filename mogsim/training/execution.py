"""How the trainer executes its step on a GPU: eager, compiled, captured whole in one CUDA graph, and the rule that
picks the fastest for a run.

**Measured** (one H200, unet-64, batch 128, bf16; BENCHMARKS.md, issue 11): the eager step takes 76 ms and is
host-bound (thousands of kernel launches a step); the same step captured in one CUDA graph takes 45 ms;
``torch.compile`` on top cuts it to 25 ms (5,050 images/s in ``mogsim train``), but compiling costs about 85 s per
network and batch shape (once per process; Inductor's caches shorten later compilations of the same shape).

**The rule** (``RuntimeOptions`` fields left at None):

* ``cuda_graph``: on for a single-process CUDA run, off on the CPU and under DDP (capturing NCCL collectives is not
  done yet). If capture fails at run time (an operation that cannot be captured), the trainer falls back to the
  eager step with one warning and records why.
* ``compile``: off on the CPU. On CUDA the trainer times the uncompiled step (a few replays on a snapshot of the
  state, which is then restored, so timing does not change the trajectory) and compiles when this launch would take
  at least :data:`COMPILE_AFTER_S` seconds uncompiled: compiling then saves about 44% of that, at least 130 s, more
  than the ~85 s it costs. Shorter launches finish sooner without it (the timing is taken in the process itself,
  so a GPU shared with other work can tip a launch near the threshold either way).

The trainer records its choice, the timed step and the reasons (:meth:`Execution.record`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

#: compile when the launch would take at least this many seconds uncompiled (see the module docstring)
COMPILE_AFTER_S = 300.0
#: eager warm-up steps before a capture: cuDNN autotuning, compilation, lazily allocated state
WARMUP_STEPS = 3
#: replays timed to predict an uncompiled launch's duration
TIMED_STEPS = 5


def compile_choice(requested: bool | None, device: torch.device, predicted_s: float | None) -> tuple[bool, str]:
    """(compile?, reason) for a launch predicted to take ``predicted_s`` seconds uncompiled (None: not timed)."""
    if requested is not None:
        return requested, "asked for" if requested else "turned off"
    if device.type != "cuda":
        return False, "auto: off on the CPU (compiling needs a C++ toolchain and takes minutes)"
    if predicted_s is None:
        return False, "auto: the step could not be timed"
    verdict = "at least" if predicted_s >= COMPILE_AFTER_S else "under"
    return predicted_s >= COMPILE_AFTER_S, (f"auto: the launch would take {predicted_s:.0f} s uncompiled, {verdict} "
                                            f"{COMPILE_AFTER_S:.0f} s")


def graph_choice(requested: bool | None, device: torch.device, world_size: int) -> tuple[bool, str]:
    """(capture the step?, reason); a request that cannot be honoured is refused earlier (Trainer's checks)."""
    if requested is not None:
        return requested, "asked for" if requested else "turned off"
    if device.type != "cuda":
        return False, "auto: CUDA graphs need a GPU"
    if world_size > 1:
        return False, "auto: off with several processes (DDP's collectives are not captured yet)"
    return True, "auto: on for a single-process CUDA run"


@dataclass
class Execution:
    """How a launch runs its steps, and why (JSON-ready through :meth:`record`)."""

    precision: str
    compiled: bool
    compile_reason: str
    cuda_graph: bool
    graph_reason: str
    streams: int = 1
    timed_step_ms: float | None = None
    predicted_uncompiled_s: float | None = None
    warmup_s: float = 0.0
    capture_s: float = 0.0
    graph_fallback: str | None = None

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "compile_after_s": COMPILE_AFTER_S}

    def describe(self) -> str:
        """One line for the command line."""
        graph = "one CUDA graph per step" if self.cuda_graph else "eager step"
        if self.graph_fallback:
            graph += f" (capture failed: {self.graph_fallback})"
        return (f"{self.precision}, {'compiled' if self.compiled else 'not compiled'} ({self.compile_reason}), "
                f"{graph}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_on_side_stream(steps: Iterable[int], run: Callable[[int], Any], device: torch.device) -> float:
    """Run ``run(step)`` for each step on a side stream (as CUDA graph capture requires of warm-up work); returns
    the seconds taken."""
    t0 = time.perf_counter()
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for step in steps:
            run(step)
    torch.cuda.current_stream(device).wait_stream(side)
    synchronize(device)
    return time.perf_counter() - t0


def capture(body: Callable[[], Any], generators: Sequence[torch.Generator], device: torch.device
            ) -> tuple[torch.cuda.CUDAGraph, Any, float]:
    """Capture ``body()`` as one CUDA graph; returns (graph, body's outputs (static tensors), seconds). Each
    generator in ``generators`` is registered with the graph: reseeding it between replays gives a replay the
    numbers an eager step would draw (torch's default generator is registered automatically)."""
    t0 = time.perf_counter()
    graph = torch.cuda.CUDAGraph()
    for gen in generators:
        graph.register_generator_state(gen)
    with torch.cuda.graph(graph):
        outputs = body()
    synchronize(device)
    return graph, outputs, time.perf_counter() - t0


def release_generators(device: torch.device) -> torch.Generator:
    """After a failed capture: the generators registered with its graph (torch's default CUDA generator always is)
    stay in capture mode, where every draw fails ("Offset increment outside graph capture encountered
    unexpectedly"). Gives the default generator a fresh state (the caller restores its seed and offset) and returns
    a fresh generator to replace the caller's own registered ones."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.default_generators[index].graphsafe_set_state(torch.Generator(device=device).graphsafe_get_state())
    return torch.Generator(device=device)


def time_steps(run: Callable[[int], Any], first_step: int, device: torch.device, steps: int = TIMED_STEPS) -> float:
    """Seconds per step of ``run(step)``, after one untimed step."""
    run(first_step)
    synchronize(device)
    t0 = time.perf_counter()
    for k in range(1, steps + 1):
        run(first_step + k)
    synchronize(device)
    return (time.perf_counter() - t0) / steps
