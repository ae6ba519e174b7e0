"""Experiments: plain functions from a configuration to a result, each writing a resumable run folder.

* :mod:`.score_match` -- one score-matching run on a mixture of low-rank Gaussians (paper 1, Fig. 5): train a
  denoiser on N samples, compare it per noise level with the empirical and the true MoLRG score, sample from shared
  seeds, give a verdict (memorizing / generalizing / in transition);
* :mod:`.score_match_sweep` -- the grid over the rank r and N, trained as batched ensembles, with the transition
  N*(r);
* :mod:`.bank_training` -- the training loop shared by both (EDM loss, Adam, EMA, resume).
"""

from .bank_training import TrainSpec, train_bank
from .score_match import ScoreMatchConfig, evaluate, make_problem, run_score_match
from .score_match_sweep import SweepConfig, run_sweep

__all__ = ["ScoreMatchConfig", "SweepConfig", "TrainSpec", "evaluate", "make_problem", "run_score_match",
           "run_sweep", "train_bank"]
