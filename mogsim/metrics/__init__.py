"""Metrics comparing trained denoisers and their samples with closed-form references.

* :mod:`.score_error` -- per-noise-level errors against the true and the empirical denoiser, mogsim's L_score,
  and where a net sits between the two references;
* :mod:`.verdict` -- memorizing / generalizing / in transition from the decisive noise levels (rule stated there);
* :mod:`.copies` -- nearest-neighbour ratio copy detection (d1/d2 < 1/3);
* :mod:`.reproducibility` -- RP of two samplers on shared seeds with a distance-based similarity for vectors.
"""

from .copies import COPY_RATIO, copy_fraction, nearest_two, nn_ratio
from .reproducibility import RP_THRESHOLD, relative_distance, reproducibility, similarity
from .score_error import SigmaErrors, noisy_queries, sigma_errors
from .verdict import Verdict, decide, decisive_levels

__all__ = ["COPY_RATIO", "RP_THRESHOLD", "SigmaErrors", "Verdict", "copy_fraction", "decide", "decisive_levels",
           "nearest_two", "nn_ratio", "noisy_queries", "relative_distance", "reproducibility", "sigma_errors",
           "similarity"]
