"""The one denoiser interface that every closed form and every trained network implements, and mogsim's shared
type names.

A denoiser is called as ``D(x, sigma)`` with ``x`` of shape (B, *sample_shape) and ``sigma`` a float or a (B,)
tensor, and returns ``E[x0 | x]`` (the posterior mean for ``x = x0 + sigma eps``) with x's shape, dtype and device.
Samplers and metrics depend on this protocol only, never on which family they hold.

Type names: :data:`Sigma` (a noise level argument), :data:`SampleShape`, and the progress-callback types
:class:`Advance` and :data:`ProgressFactory` that training, sampling, evaluation and sweeps report through.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch

from .conventions import Sigma, check_positive_sigma, score_from_denoiser, sigma_like
from .errors import InputError


@runtime_checkable
class Denoiser(Protocol):
    """``D(x, sigma) -> E[x0 | x]`` for ``x = x0 + sigma * eps``."""

    def __call__(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor: ...


SampleShape = tuple[int, ...]
"""The shape of one sample, e.g. ``(48,)`` for a vector or ``(3, 32, 32)`` for an image."""


class Advance(Protocol):
    """Reports progress on one task: ``advance(k)`` after k more units of work; ``note`` replaces the task's short
    status text (e.g. the current loss), ``advance(0, note)`` updates only the note."""

    def __call__(self, steps: int, /, note: str | None = None) -> None: ...


ProgressFactory = Callable[[str, int], Advance]
"""``progress(description, total)`` starts a task of ``total`` units and returns its :class:`Advance`."""


class ClosedFormDenoiser:
    """Base of the analytic families: input checks, and the score and noise prediction derived from ``D``.

    Subclasses set ``sample_shape`` and implement :meth:`denoise` on flattened (B, d) inputs of a float dtype; they
    may override :meth:`score` with a formula that is more stable than ``(D - x) / sigma^2``.
    """

    sample_shape: tuple[int, ...]

    @property
    def dim(self) -> int:
        """Number of coordinates d of one sample."""
        d = 1
        for k in self.sample_shape:
            d *= int(k)
        return d

    def __call__(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        return self.denoise(x, sigma)

    def denoise(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """Posterior mean ``E[x0 | x]``, same shape, dtype and device as ``x``."""
        flat, sig = self._prepare(x, sigma)
        return self._denoise_flat(flat, sig).reshape(x.shape)

    def score(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``grad_x log p_sigma(x) = (D(x) - x) / sigma^2`` (Tweedie)."""
        return score_from_denoiser(self.denoise(x, sigma), x, sigma)

    # -- helpers for subclasses -------------------------------------------------------------------------------
    def _denoise_flat(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _prepare(self, x: torch.Tensor, sigma: Sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate ``x`` and ``sigma``; return x as (B, d) and sigma as a float64 (B, 1) tensor on x's device.

        Sigma stays float64 whatever x's dtype, so a float32 query at sigma = 1e-300 is not turned into sigma = 0.
        """
        if not isinstance(x, torch.Tensor):
            raise InputError(f"x is a {type(x).__name__}; pass a torch.Tensor of shape "
                             f"(B, {', '.join(map(str, self.sample_shape))})")
        if not x.is_floating_point():
            raise InputError(f"x has dtype {x.dtype}; pass a floating-point tensor (float32 or float64)")
        if x.ndim < 1 or x.shape[0] == 0 or x[0].numel() != self.dim:
            raise InputError(
                f"x has shape {tuple(x.shape)}; expected (B, *sample_shape) with sample_shape {self.sample_shape}"
            )
        flat = x.reshape(x.shape[0], self.dim)
        sig = sigma_like(check_positive_sigma(sigma), flat, dtype=torch.float64).expand(flat.shape[0], 1)
        return flat, sig
