"""Score matching on a mixture of low-rank Gaussians (paper 1, Fig. 5): did a trained denoiser learn the empirical
score (memorization) or the true MoLRG score (generalization)?

* :mod:`.config` -- :class:`ScoreMatchConfig` and :class:`SweepConfig` (declared parameters, checks, derived
  seeds, budget) and the training recipe they give the engine;
* :mod:`.evaluation` -- :func:`evaluate`: per-sigma errors against both references, samples from shared seeds,
  copies, subspace membership, RP and the verdict, each with its stated rule;
* :mod:`.run` -- one run in a resumable, content-addressed run folder, trained on :class:`mogsim.training.Trainer`;
* :mod:`.sweep` -- the grid over r and N, trained as the members of batched models, with the transition N*(r);
* :mod:`.summary` and :mod:`.command` -- the printed results and the command both front ends call.
"""

from .command import FLAGS, RunOptions, main, run_command
from .config import ScoreMatchConfig, SweepConfig, training_config
from .evaluation import Evaluation, evaluate
from .run import RunResult, make_problem, run_score_match, train_members
from .sweep import SweepResult, export_compact, run_sweep

__all__ = ["FLAGS", "Evaluation", "RunOptions", "RunResult", "ScoreMatchConfig", "SweepConfig", "SweepResult",
           "evaluate", "export_compact", "main", "make_problem", "run_command", "run_score_match", "run_sweep",
           "train_members", "training_config"]
