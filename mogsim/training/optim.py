"""Adam, element-wise: the one optimizer of the training engine.

The update is ``torch.optim.Adam``'s without weight decay or amsgrad (Kingma & Ba 2015, with bias correction).
It is written out because constructing ``torch.optim.Adam`` imports TorchDynamo: measured at 0.8 to 2.2 s in a fresh
process on a 2-core CPU (torch 2.13), a large share of a 30-second score-matching run. Being element-wise, it keeps
the members of a batched network independent (their losses are summed; each weight sees only its own gradient).

``fused=True`` (the default on CUDA) runs ``torch._fused_adam_``, the kernel behind ``torch.optim.Adam(fused=True)``,
without that import; otherwise ``torch._foreach`` operations. The fused path keeps its step count on the device too
and takes the learning rate as a device tensor, so a step has no host synchronisation and can be captured in a CUDA
graph (the trainer then counts replayed steps on the host with :meth:`Adam.count_replayed_step`). The state (step
count and both moments) is plain tensors and an int, saved in the one checkpoint format.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch


class Adam:
    """Adam on a list of tensors; :meth:`step` takes the learning rate of this step."""

    def __init__(self, params: Sequence[torch.Tensor], *, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 fused: bool = False) -> None:
        self.params = list(params)
        self.betas, self.eps, self.fused = (float(betas[0]), float(betas[1])), float(eps), bool(fused)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0
        # the fused kernel reads the step count (bias correction) from one 0-d device tensor per parameter
        self._step_tensors = [torch.zeros((), device=p.device) for p in self.params] if self.fused else []

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor the next update reads and writes besides the parameters and their gradients."""
        return self.exp_avg + self.exp_avg_sq + self._step_tensors

    def count_replayed_step(self) -> None:
        """Advance the host's step count for an update that a CUDA graph replay made (fused path only)."""
        self.steps += 1

    @torch.no_grad()
    def step(self, lr: float | torch.Tensor) -> None:
        """One update from the parameters' ``.grad`` (parameters without a gradient are skipped). ``lr`` is a
        number, or (fused path) a 0-d tensor on the parameters' device."""
        b1, b2 = self.betas
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        exp_avg = [self.exp_avg[i] for i in live]
        exp_avg_sq = [self.exp_avg_sq[i] for i in live]
        self.steps += 1
        if self.fused:
            torch._foreach_add_(self._step_tensors, 1.0)
            steps = [self._step_tensors[i] for i in live]
            torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], steps, lr=lr, beta1=b1, beta2=b2,
                               weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
            return
        lr = float(lr)  # the foreach path runs on the host's numbers (CPU training)
        torch._foreach_lerp_(exp_avg, grads, 1.0 - b1)
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1.0 - b2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(1.0 - b2**self.steps))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, exp_avg, denom, -lr / (1.0 - b1**self.steps))

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "exp_avg": list(self.exp_avg), "exp_avg_sq": list(self.exp_avg_sq)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        for t in self._step_tensors:
            t.fill_(float(self.steps))
        for dst, src in zip(self.exp_avg + self.exp_avg_sq, list(state["exp_avg"]) + list(state["exp_avg_sq"])):
            dst.copy_(src)
