"""Experiments: plain functions from a configuration to a result, each writing a resumable run folder.

* :mod:`.score_match` -- score matching on a mixture of low-rank Gaussians (paper 1, Fig. 5): single runs and the
  sweep over the rank r and N, trained on the common engine (:mod:`mogsim.training`).
"""
