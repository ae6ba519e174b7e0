"""Score matching on a mixture of low-rank Gaussians (paper 1, Fig. 5): did a trained denoiser learn the empirical
score (memorization) or the true MoLRG score (generalization), and when along training?

* :mod:`.config` -- :class:`ScoreMatchConfig` and :class:`SweepConfig` (declared parameters, checks, derived
  seeds, the budget conventions, the evaluation schedule) and the training recipe they give the engine;
* :mod:`.evaluation` -- the verdict's plan for a run and :func:`evaluate`: the verdict and the per-sigma errors
  against both references, each with its stated rule;
* :mod:`.timeline` -- training a group of cells as the members of one model, judged along training time;
* :mod:`.run` -- one run in a resumable, content-addressed run folder;
* :mod:`.sweep` -- the grid over width, r and N, trained as the members of batched models (sharded over processes
  if asked), with N*(r) under every measure and the time-axis events;
* :mod:`.claims` -- the papers' claims judged by stated rules from the sweep's numbers;
* :mod:`.summary` and :mod:`.command` -- the printed results and the command both front ends call.
"""

from .command import FLAGS, RunOptions, main, run_command
from .config import ScoreMatchConfig, SweepConfig, training_config
from .evaluation import Evaluation, build_plan, evaluate
from .run import RunResult, make_problem, run_score_match
from .sweep import SweepResult, export_compact, run_sweep
from .timeline import Training, train_members

__all__ = ["FLAGS", "Evaluation", "RunOptions", "RunResult", "ScoreMatchConfig", "SweepConfig", "SweepResult",
           "Training", "build_plan", "evaluate", "export_compact", "main", "make_problem", "run_command",
           "run_score_match", "run_sweep", "train_members", "training_config"]
