"""Metrics comparing trained denoisers and their samples with closed-form references.

* :mod:`.molrg_verdict` -- ``score_match_verdict``: memorizing / generalizing / in transition / neither for a
  denoiser trained on MoLRG samples, with the numbers that decided it;
* :mod:`.score_error` -- per-noise-level errors against the true and the empirical denoiser, mogsim's L_score,
  and where a net sits between the two references;
* :mod:`.copies` -- nearest-neighbour ratio copy detection (d1/d2 < 1/3), bootstrap intervals, GL;
* :mod:`.similarity` -- similarity backends (pixel correlation, a user's TorchScript/ONNX embedding, relative
  distance for vectors);
* :mod:`.reproducibility` -- RP of two samplers on shared seeds, and its mismatched-seed control;
* :mod:`.denoiser_distance` -- per-sigma distances to reference denoisers and the training loss over its floor;
* :mod:`.jacobian` -- numerical rank of a denoiser's Jacobian (paper 2).
"""

from .copies import COPY_RATIO, copy_fraction, fraction_ci, generalizability, nearest_two, nn_ratio, ratio_of
from .denoiser_distance import DenoiserDistances, LossRatio, denoiser_distances, loss_ratio
from .jacobian import jacobian_rank, numerical_rank, trajectory_ranks
from .molrg_verdict import score_match_verdict
from .reproducibility import (RP_THRESHOLD, Agreement, agreement, mismatched_agreement, relative_distance,
                              reproducibility, shifted_matches)
from .score_error import SigmaErrors, noisy_queries, sigma_errors
from .similarity import (PIXEL_THRESHOLD, SSCD_THRESHOLD, EmbeddingSimilarity, LearnedEmbedding, PixelCorrelation,
                         RelativeDistance, Similarity, make_similarity)

__all__ = ["COPY_RATIO", "PIXEL_THRESHOLD", "RP_THRESHOLD", "SSCD_THRESHOLD", "Agreement", "DenoiserDistances",
           "EmbeddingSimilarity", "LearnedEmbedding", "LossRatio", "PixelCorrelation", "RelativeDistance",
           "SigmaErrors", "Similarity", "agreement", "copy_fraction",
           "denoiser_distances", "fraction_ci", "generalizability", "jacobian_rank", "loss_ratio", "make_similarity",
           "mismatched_agreement", "nearest_two", "nn_ratio", "noisy_queries", "numerical_rank", "ratio_of",
           "relative_distance", "reproducibility", "score_match_verdict", "shifted_matches", "sigma_errors",
           "trajectory_ranks"]
