"""mogsim: exact closed-form optimal denoisers, samplers and experiments for diffusion models.

The public core::

    from mogsim import EmpiricalDenoiser, GaussianDenoiser, MoLRG      # closed-form denoisers D(x, sigma)
    from mogsim import edm_sigmas, noise_for_seeds, sample              # deterministic EDM sampler
    from mogsim import Denoiser, InputError                             # the protocol; the user-error type
    from mogsim import score_match_verdict, jacobian_rank               # memorizing or generalizing; paper 2
"""

from .closed_forms import EmpiricalDenoiser, GaussianDenoiser, MoLRG
from .conventions import (
    EDMPrecond,
    EDMSchedule,
    VEPrecond,
    VESchedule,
    VPPrecond,
    VPSchedule,
    denoiser_from_eps,
    denoiser_from_score,
    eps_from_denoiser,
    scaled_denoiser,
    score_from_denoiser,
)
from .denoiser import ClosedFormDenoiser, Denoiser
from .errors import InputError
from .metrics.jacobian import jacobian_rank
from .metrics.molrg_verdict import score_match_verdict
from .sampling import edm_sigmas, noise_for_seeds, sample

__version__ = "0.1.0"

__all__ = [
    "ClosedFormDenoiser",
    "Denoiser",
    "EDMPrecond",
    "EDMSchedule",
    "EmpiricalDenoiser",
    "GaussianDenoiser",
    "InputError",
    "MoLRG",
    "VEPrecond",
    "VESchedule",
    "VPPrecond",
    "VPSchedule",
    "denoiser_from_eps",
    "denoiser_from_score",
    "edm_sigmas",
    "eps_from_denoiser",
    "jacobian_rank",
    "noise_for_seeds",
    "sample",
    "scaled_denoiser",
    "score_match_verdict",
    "score_from_denoiser",
]
