"""Score matching on a mixture of low-rank Gaussians (paper 1, Fig. 5): did a trained denoiser learn the empirical
score (memorization) or the true MoLRG score (generalization)?

Plain functions from a :class:`ScoreMatchConfig` to results:

* :func:`make_problem`: the seeded MoLRG (K mutually orthogonal rank-r subspaces of R^n) and its N training points
  (balanced over components), drawn once;
* :func:`build_bank`: M untrained denoisers (the batched MLP ensemble, or the DDPM++ UNet on n-vectors seen as
  (n/16)x4x4 images) with EDM preconditioning and ``sigma_data = sqrt(r / n)``, the data's per-coordinate std;
* :func:`evaluate`: per-sigma errors against both references on the EDM grid, samples from shared seeds by the
  net, the empirical optimum and the true denoiser, copies, subspace membership, RP and the verdict;
* :func:`run_score_match`: one run in a resumable, cached run folder (:mod:`mogsim.runs`).

Seeds: one master ``seed`` gives, through numpy's ``SeedSequence``, separate seeds for the subspaces, the training
set, the initialisation, the training noise and the evaluation queries (all recorded). The subspaces depend on
(seed, n, K, r) only and the training set on (seed, n, K, r, N) only, so a sweep cell and a single run with the same
values train on the same data. The sampler seeds are 0..S-1 for every run (shared noise).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..closed_forms import EmpiricalDenoiser, MoLRG
from ..devices import exact_float32_matmul, resolve_device
from ..errors import InputError
from ..metrics.copies import COPY_RATIO, nearest_two
from ..metrics.reproducibility import RP_THRESHOLD, relative_distance
from ..metrics.score_error import SigmaErrors, noisy_queries, sigma_errors
from ..metrics.verdict import decide
from ..nets.ensemble import EnsembleMLP
from ..runs import config_key
from ..sampling import edm_sigmas, noise_for_seeds, sample
from .bank_training import SingleNetBank, TrainSpec

ARCHS = ("mlp", "unet")

#: A sample lies on a true subspace when min_k ||x - P_k x|| / ||x|| is below this.
SUBSPACE_TOL = 0.1


@dataclass(frozen=True)
class ScoreMatchConfig:
    """Everything that determines one score-matching run (all of it is hashed into the run's cache key).

    Problem: ``rank`` r, ``n`` N (training points, balanced over components), ``components`` K, ``dim`` n.
    Network: ``arch`` (``mlp``: :class:`EnsembleMLP` with ``width``, ``depth`` hidden layers; ``unet``: DDPM++
    ``VectorUNet`` with ``model_channels = width``). Training: ``steps`` x ``batch`` (the budget, the same for every
    N), Adam ``lr`` with a linear warm-up over ``lr_warmup_frac`` of the steps, EMA half-life ``ema_halflife_frac`` of
    the steps, EDM's ``ln sigma ~ N(p_mean, p_std^2)``. Evaluation: ``eval_queries`` per level and query set on the
    EDM grid of ``sampler_steps`` levels, ``sample_seeds`` sampler seeds (``solver``), and the stated thresholds
    ``copy_ratio``, ``subspace_tol``, ``rp_threshold`` and the L_score band ``band_sigma_min..band_sigma_max``.
    """

    rank: int = 4
    n: int = 512
    components: int = 2
    dim: int = 48
    arch: str = "mlp"
    width: int = 256
    depth: int = 3
    steps: int = 3000
    batch: int = 256
    lr: float = 1e-3
    seed: int = 0
    lr_warmup_frac: float = 0.05
    ema_halflife_frac: float = 0.05
    p_mean: float = -1.2
    p_std: float = 1.2
    eval_queries: int = 512
    sample_seeds: int = 256
    sampler_steps: int = 18
    solver: str = "heun"
    copy_ratio: float = COPY_RATIO
    subspace_tol: float = SUBSPACE_TOL
    rp_threshold: float = RP_THRESHOLD
    band_sigma_min: float = 0.1
    band_sigma_max: float = 2.0

    # -- validation -------------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise :class:`InputError` naming the option and the fix for any value no run can use."""
        ints = {"rank": self.rank, "n": self.n, "components": self.components, "dim": self.dim,
                "width": self.width, "depth": self.depth, "steps": self.steps, "batch": self.batch,
                "eval-queries": self.eval_queries, "sample-seeds": self.sample_seeds,
                "sampler-steps": self.sampler_steps}
        for name, value in ints.items():
            if isinstance(value, bool) or int(value) != value:
                raise InputError(f"--{name} {value!r}; pass an integer")
        if self.n < 1:
            raise InputError(f"--n {self.n}; the training set needs at least 1 sample (N >= 1)")
        for name in ("rank", "components", "dim", "width", "depth", "steps", "batch", "eval-queries",
                     "sample-seeds", "sampler-steps"):
            if ints[name] < 1:
                raise InputError(f"--{name} {ints[name]}; pass an integer >= 1")
        if self.components * self.rank > self.dim:
            raise InputError(f"--components * --rank = {self.components} * {self.rank} = "
                             f"{self.components * self.rank} exceeds --dim {self.dim}; mutually orthogonal subspaces "
                             "need K * r <= n: lower --rank or --components, or raise --dim")
        if self.arch not in ARCHS:
            raise InputError(f"--arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        if self.arch == "unet":
            _unet_image_shape(self.dim)
        if self.seed < 0:
            raise InputError(f"--seed {self.seed}; pass a non-negative integer")
        if self.solver not in ("heun", "euler"):
            raise InputError(f"solver {self.solver!r}; use heun or euler")
        if not 0 < self.band_sigma_min <= self.band_sigma_max:
            raise InputError(f"band_sigma_min {self.band_sigma_min}, band_sigma_max {self.band_sigma_max}; need "
                             "0 < min <= max")
        for name, value in (("copy_ratio", self.copy_ratio), ("subspace_tol", self.subspace_tol),
                            ("rp_threshold", self.rp_threshold)):
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"{name} {value}; pass a positive number")
        self.train_spec().check()

    # -- derived values ---------------------------------------------------------------------------------------------
    def train_spec(self) -> TrainSpec:
        """The training recipe."""
        return TrainSpec(steps=self.steps, batch=self.batch, lr=self.lr, lr_warmup_frac=self.lr_warmup_frac,
                         ema_halflife_frac=self.ema_halflife_frac, p_mean=self.p_mean, p_std=self.p_std)

    @property
    def sigma_data(self) -> float:
        """EDM's ``sigma_data``: the per-coordinate std of the MoLRG, ``sqrt(r / n)`` (E||x||^2 = r)."""
        return math.sqrt(self.rank / self.dim)

    def seeds(self) -> dict[str, int]:
        """The derived seeds (numpy SeedSequence of (seed, tag, values it depends on))."""
        def derive(*key: int) -> int:
            return int(np.random.SeedSequence([int(self.seed), *key]).generate_state(1, np.uint32)[0])

        return {"subspaces": derive(1, self.dim, self.components, self.rank),
                "training_set": derive(2, self.dim, self.components, self.rank, self.n),
                "init": derive(3, self.dim, self.components, self.rank, self.n),
                "training_noise": derive(4, self.dim, self.components, self.rank, self.n),
                "eval_queries": derive(5, self.dim, self.components, self.rank)}

    def budget(self) -> dict[str, Any]:
        """The training budget in the units that move the transition."""
        seen = self.steps * self.batch
        return {"steps": self.steps, "batch": self.batch, "samples_seen": seen, "epochs": seen / self.n,
                "convention": "fixed steps for every N"}

    def resolved(self, device: torch.device) -> dict[str, Any]:
        """The JSON-ready resolved configuration (cache key material): fields, derived values, device type."""
        return {**asdict(self), "sigma_data": self.sigma_data, "derived_seeds": self.seeds(),
                "budget": self.budget(), "device_type": device.type, "experiment": "score-match", "version": 1}

    def key(self, device: torch.device) -> str:
        """Hash of the resolved configuration: the run's cache key."""
        return config_key(self.resolved(device))

    def slug(self) -> str:
        """A readable folder-name prefix."""
        return (f"r{self.rank}_N{self.n}_K{self.components}_d{self.dim}_{self.arch}{self.width}_"
                f"s{self.steps}_seed{self.seed}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScoreMatchConfig":
        """Build from a dict, ignoring derived keys (e.g. a stored resolved config)."""
        names = {f.name for f in fields(cls)}
        unknown = [k for k in data if k not in names and k not in
                   ("sigma_data", "derived_seeds", "budget", "device_type", "experiment", "version")]
        if unknown:
            raise InputError(f"unknown score-match config key(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join(sorted(names))}")
        return cls(**{k: v for k, v in data.items() if k in names})


def _unet_image_shape(dim: int) -> tuple[int, int, int]:
    """The (C, 4, 4) image a vector of length ``dim`` is reshaped to for ``--arch unet``."""
    if dim % 16:
        raise InputError(f"--arch unet treats a sample as a (C, 4, 4) image and needs --dim divisible by 16 "
                         f"(got {dim}); use --dim 48 (3x4x4) or --arch mlp")
    return (dim // 16, 4, 4)


# -- the problem ------------------------------------------------------------------------------------------------------
def make_problem(cfg: ScoreMatchConfig) -> tuple[MoLRG, torch.Tensor]:
    """The MoLRG and its N training points (float64, (N, n)), balanced over components."""
    seeds = cfg.seeds()
    mol = MoLRG.random(cfg.dim, cfg.components, cfg.rank, seed=seeds["subspaces"])
    train, _ = mol.sample(cfg.n, seed=seeds["training_set"], balanced=True)
    return mol, train


def build_bank(cfgs: list[ScoreMatchConfig]) -> nn.Module:
    """Untrained denoisers for the configs (one member each): an :class:`EnsembleMLP` for ``mlp`` (configs must
    share dim, width and depth), a :class:`SingleNetBank` around a DDPM++ ``VectorUNet`` for ``unet`` (one config)."""
    first = cfgs[0]
    if first.arch == "mlp":
        if any((c.arch, c.dim, c.width, c.depth) != ("mlp", first.dim, first.width, first.depth) for c in cfgs):
            raise InputError("an ensemble needs the same arch, dim, width and depth for every member")
        init_seed = first.seeds()["init"] if len(cfgs) == 1 else int(
            np.random.SeedSequence([c.seeds()["init"] for c in cfgs]).generate_state(1, np.uint32)[0])
        return EnsembleMLP(len(cfgs), first.dim, width=first.width, depth=first.depth,
                           sigma_data=[c.sigma_data for c in cfgs], seed=init_seed)
    if len(cfgs) != 1:
        raise InputError("--arch unet trains one model at a time")
    from ..nets.registry import build_network  # the UNet family lives in mogsim.nets (another module's job)

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(first.seeds()["init"])
        net = build_network("unet-vector", (first.dim,), image_shape=_unet_image_shape(first.dim),
                            model_channels=first.width)
    return SingleNetBank(net, first.sigma_data, first.dim)


def bank_seed(cfgs: list[ScoreMatchConfig]) -> int:
    """The training-noise seed of a bank (the member's own seed when M = 1)."""
    if len(cfgs) == 1:
        return cfgs[0].seeds()["training_noise"]
    return int(np.random.SeedSequence([c.seeds()["training_noise"] for c in cfgs]).generate_state(1, np.uint32)[0])


# -- evaluation ------------------------------------------------------------------------------------------------------
Denoise = Callable[[torch.Tensor, Any], torch.Tensor]


@dataclass
class Evaluation:
    """Everything :func:`evaluate` measured for one trained denoiser."""

    metrics: dict[str, Any]
    per_sigma: list[dict[str, Any]]
    per_sample: dict[str, np.ndarray]
    errors: dict[str, SigmaErrors] = field(repr=False, default_factory=dict)


def eval_sigmas(cfg: ScoreMatchConfig) -> list[float]:
    """The EDM grid (Karras et al.: 80 .. 0.002, rho 7) without its final 0."""
    return [float(s) for s in edm_sigmas(cfg.sampler_steps)[:-1]]


@torch.no_grad()
def evaluate(net: Denoise, mol: MoLRG, train: torch.Tensor, cfg: ScoreMatchConfig, device: torch.device,
             progress: Callable[[int], None] | None = None) -> Evaluation:
    """Compare ``net`` with the true MoLRG denoiser and the empirical optimum of ``train`` (see module docs)."""
    sigmas = eval_sigmas(cfg)
    seeds = cfg.seeds()
    train_dev = train.to(device=device, dtype=torch.float64)
    emp = EmpiricalDenoiser(train_dev, compute_dtype=torch.float64)
    fresh, _ = mol.sample(cfg.eval_queries, seed=seeds["eval_queries"], balanced=True)
    errors: dict[str, SigmaErrors] = {}
    with exact_float32_matmul():
        for name, x0, salt in (("true", fresh, 0), ("train", train, 1)):
            queries = noisy_queries(x0, sigmas, cfg.eval_queries, seeds["eval_queries"] + salt)
            errors[name] = sigma_errors(net, mol, emp, queries, sigmas, device=device)
            if progress is not None:
                progress(1)
        noise = noise_for_seeds(range(cfg.sample_seeds), (cfg.dim,), dtype=torch.float64, device=device)
        grid = edm_sigmas(cfg.sampler_steps)
        samples = {}
        for name, d in (("net", net), ("empirical", emp), ("true", mol)):
            samples[name] = sample(d, noise, grid, cfg.solver)
            if progress is not None:
                progress(1)
    per_sample: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {}
    for name, xs in samples.items():
        d1, d2, nearest = nearest_two(xs, train_dev)
        ratio = torch.where(d1 == 0, torch.zeros_like(d1), d1 / d2)
        resid = mol.subspace_residual(xs)
        per_sample[f"{name}_nn_ratio"] = ratio.cpu().numpy()
        per_sample[f"{name}_nn_distance"] = d1.cpu().numpy()
        per_sample[f"{name}_nearest"] = nearest.cpu().numpy()
        per_sample[f"{name}_subspace_residual"] = resid.cpu().numpy()
        summary[f"copy_fraction_{name}"] = float((ratio < cfg.copy_ratio).double().mean())
        summary[f"on_subspace_fraction_{name}"] = float((resid < cfg.subspace_tol).double().mean())
    for ref in ("empirical", "true"):
        rel = relative_distance(samples["net"], samples[ref])
        per_sample[f"rel_distance_net_{ref}"] = rel.cpu().numpy()
        summary[f"rp_net_{ref}"] = float((rel < cfg.rp_threshold).double().mean())
        summary[f"median_rel_distance_net_{ref}"] = float(rel.median())
    rel_refs = relative_distance(samples["empirical"], samples["true"])
    summary["rp_empirical_true"] = float((rel_refs < cfg.rp_threshold).double().mean())
    per_sample["samples_net"] = samples["net"].cpu().numpy()

    verdict = decide(errors["true"], errors["train"])
    band = np.array([cfg.band_sigma_min <= s <= cfg.band_sigma_max for s in sigmas], dtype=np.float64)
    per_sigma = []
    for name, err in errors.items():
        for i, s in enumerate(sigmas):
            per_sigma.append({
                "queries": name, "sigma": s, "l_score_true": err.l_score_true[i],
                "l_score_empirical": err.l_score_emp[i], "e_true": err.e_true[i], "e_empirical": err.e_emp[i],
                "reference_gap": err.gap[i], "position": err.position[i], "offset": err.offset[i],
                "decisive": bool(verdict.decisive[name][i])})
    metrics = {
        "l_score_true": errors["true"].total("true"),
        "l_score_empirical": errors["true"].total("empirical"),
        "l_score_true_train_queries": errors["train"].total("true"),
        "l_score_empirical_train_queries": errors["train"].total("empirical"),
        "l_score_true_band": errors["true"].total("true", band),
        "l_score_empirical_band": errors["true"].total("empirical", band),
        "band_sigmas": [s for s, b in zip(sigmas, band) if b],
        "generalization_index": verdict.generalization_index,
        **summary,
        "verdict": verdict.label,
        "verdict_detail": verdict.as_dict(),
    }
    return Evaluation(metrics, per_sigma, per_sample, errors)


# -- one run in a run folder -----------------------------------------------------------------------------------------
#: ``progress(description, total)`` returns an ``advance(k)`` callable (e.g. a rich task); None means silent.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _silent(description: str, total: int) -> Callable[[int], None]:
    return lambda k: None


@dataclass
class RunResult:
    """The outcome of :func:`run_score_match`."""

    path: Any
    metrics: dict[str, Any]
    per_sigma: list[dict[str, Any]]
    reused: bool
    complete: bool = True


def save_checkpoint(path: Any, bank: nn.Module, cfgs: list[ScoreMatchConfig], training: dict[str, Any]) -> None:
    """Save the trained (EMA) bank, with the configs that rebuild it, atomically."""
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"configs": [asdict(c) for c in cfgs], "state": bank.state_dict(), "training": training}, tmp)


def load_checkpoint(path: Any, device: torch.device) -> tuple[nn.Module, list[ScoreMatchConfig], dict[str, Any]]:
    """Rebuild a bank saved by :func:`save_checkpoint`."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cfgs = [ScoreMatchConfig.from_dict(c) for c in blob["configs"]]
    bank = build_bank(cfgs)
    bank.load_state_dict(blob["state"])
    return bank.to(device).eval(), cfgs, blob["training"]


def training_summary(outcome: Any, members: int) -> dict[str, Any]:
    """Loss and timing of a finished training, per member."""
    hist = outcome.loss_history
    first = hist[0][1:] if hist else [float("nan")] * members
    last = hist[-1][1:] if hist else [float("nan")] * members
    return {"steps_done": outcome.steps_done, "seconds": outcome.seconds, "loss_first": first, "loss_last": last,
            "loss_history": hist}


def finish_cell(folder: Any, cfg: ScoreMatchConfig, net: Denoise, mol: MoLRG, train: torch.Tensor,
                device: torch.device, training: dict[str, Any], *, report: bool, figure: bool = True,
                progress: ProgressFactory = _silent, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a trained denoiser and write the run folder's result files; returns the metrics.

    ``figure=False`` skips ``per_sigma.png`` (sweeps draw one combined figure instead; ``--report`` on a single run
    of the same configuration draws it).
    """
    from ..provenance import provenance

    t0 = time.monotonic()
    advance = progress("evaluating", 5)
    ev = evaluate(net, mol, train, cfg, device, progress=advance)
    eval_seconds = time.monotonic() - t0
    folder.write_csv("per_sigma.csv", ev.per_sigma)
    folder.write_npz("samples.npz", **ev.per_sample)
    title = f"r={cfg.rank}, N={cfg.n}, K={cfg.components}, n={cfg.dim}, {cfg.arch} w{cfg.width}, {cfg.steps} steps"
    if figure:
        from ..report.figures import per_sigma_figure  # matplotlib only when drawing

        per_sigma_figure(ev.per_sigma, title).savefig(folder.file("per_sigma.png"), dpi=100)
    metrics = {**ev.metrics, "budget": cfg.budget(),
               "training": {k: v for k, v in training.items() if k != "loss_history"},
               "loss_history": training.get("loss_history", []),
               "eval_seconds": eval_seconds, "rules": rules_text(cfg), "provenance": provenance(device),
               **(extra or {})}
    folder.write_metrics(metrics)
    if report:
        write_report(folder)
    return metrics


def rules_text(cfg: ScoreMatchConfig) -> dict[str, str]:
    """The stated definitions and thresholds behind the metrics (recorded with every result)."""
    return {
        "l_score": "L_score(ref) = sum_sigma E||sigma (s_net - s_ref)||^2 / sum_sigma E||sigma s_ref||^2 over the EDM "
                   "grid (mogsim's definition); per sigma it equals E||D_net - D_ref||^2 / E||D_ref - x||^2. "
                   "l_score_true / l_score_empirical use x from the noisy true distribution; *_train_queries use "
                   "noisy training points; *_band sums only the levels with "
                   f"{cfg.band_sigma_min:g} <= sigma <= {cfg.band_sigma_max:g} (the same levels for every run, where "
                   "the references separate and small nets are accurate); the grid total is dominated by the "
                   "smallest sigma.",
        "copy": f"a sample copies a training point when d1/d2 < {cfg.copy_ratio:.4g} (nearest / second-nearest "
                "Euclidean distance to the training set)",
        "subspace": f"a sample lies on a true subspace when min_k ||x - P_k x|| / ||x|| < {cfg.subspace_tol:g}",
        "rp": f"RP(net, ref) = fraction of seeds whose two samples have relative distance ||a - b|| / "
              f"sqrt((||a||^2 + ||b||^2)/2) < {cfg.rp_threshold:.4g} (similarity 1 - distance > "
              f"{1 - cfg.rp_threshold:.4g})",
    }


def write_report(folder: Any) -> Any:
    """Write ``report.pdf`` of a finished run folder from its stored files."""
    from ..report.pdf import write_run_report
    from ..runs import read_csv

    stored = json.loads(folder.config_path.read_text())
    metrics = folder.load_metrics()
    rows = read_csv(folder.file("per_sigma.csv"))
    with np.load(folder.file("samples.npz")) as z:
        per_sample = {k: z[k] for k in z.files}
    short = {k: v for k, v in metrics.items() if k not in ("loss_history", "provenance", "rules")}
    return write_run_report(folder.file("report.pdf"), stored["config"], short, metrics.get("provenance", {}),
                            rows, per_sample)


def run_score_match(cfg: ScoreMatchConfig, out: Any, *, device: str | torch.device = "auto", report: bool = False,
                    progress: ProgressFactory = _silent, deadline: float | None = None) -> RunResult:
    """Train (or resume), evaluate and record one run under ``out/<slug>-<key>/``; reuse it if finished."""
    from ..io import ensure_writable_dir
    from ..provenance import provenance
    from ..runs import RunFolder, read_csv
    from .bank_training import train_bank

    cfg.check()
    dev = resolve_device(device)
    root = ensure_writable_dir(out)
    folder = RunFolder(root, cfg.slug(), cfg.key(dev))
    if folder.is_done():
        if report and not folder.file("report.pdf").exists():
            write_report(folder)
        return RunResult(folder.path, folder.load_metrics(), read_csv(folder.file("per_sigma.csv")), reused=True)
    folder.start(cfg.resolved(dev), provenance(dev))
    mol, train = make_problem(cfg)
    if folder.checkpoint_path.exists():
        bank, _, training = load_checkpoint(folder.checkpoint_path, dev)
    else:
        bank = build_bank([cfg])
        outcome = train_bank(bank, [train], cfg.train_spec(), seed=bank_seed([cfg]), device=dev,
                             state_path=folder.state_path, deadline=deadline,
                             progress=progress("training", cfg.steps))
        if not outcome.complete:
            return RunResult(folder.path, {}, [], reused=False, complete=False)
        training = training_summary(outcome, 1)
        bank = outcome.ema
        save_checkpoint(folder.checkpoint_path, bank, [cfg], training)
        folder.state_path.unlink(missing_ok=True)
    metrics = finish_cell(folder, cfg, bank.member(0), mol, train, dev, training, report=report, progress=progress)
    return RunResult(folder.path, metrics, read_csv(folder.file("per_sigma.csv")), reused=False)
