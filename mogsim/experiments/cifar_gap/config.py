"""What ``mogsim cifar-optimal-gap`` measures (:class:`GapConfig`), how a call runs (:class:`GapRunOptions`), the
two profiles of defaults, and the grid of cells with their evaluation points.

A **cell** is (N, network, training seed): a network trained on the class-balanced nested CIFAR-10 subset of N
images. Its **evaluation points** are numbers of training images seen (whole optimizer steps); at each one the
cell's EMA network is compared with the empirical optimum of its subset
(:func:`mogsim.experiments.cifar_gap.eval.evaluate_cell`).

**Profiles** supply defaults; every option given on the command line (or in ``--config``) overrides its profile
value. ``paper`` follows paper 1: N = 2^6 .. 2^15, DDPM++ UNets of width 64, 128 and 256 (unet-64/128/256), VP
preconditioning, batch 128, Adam lr 1e-3, 32x32 images, 1,000 sampler seeds; its budget (2 Mimg, 8 evaluation
points) is ours, far below the paper's 50 Mimg; its 256 distance queries per level (512 before: the relative
standard error of a distance is then about 2% at the median level and 8% at the worst, BENCHMARKS.md, issue 12)
keep the evaluation's net calls a small share of training. ``cpu-small`` is a profile that finishes in minutes on 2
CPU cores and still memorizes at its smallest N: N = 8 and 64, ``unet-tiny`` of width 16 on images reduced to 16x16 by 2x2
box averaging, EDM preconditioning (VP memorized 4.5x slower in our CPU runs), batch 32, lr 1e-3 without warm-up,
24,000 images, 200 sampler seeds, 64 distance queries per level and a loss batch of 512. ``auto`` picks ``paper``
on a GPU and ``cpu-small`` on the CPU. Every deviation from the paper is listed by :func:`deviations` and stored
with the results.

**Evaluation arithmetic** (``eval_precision``): the EMA net runs in float32 (``fp32``, TF32 off) unless the option
says ``tf32`` or ``bf16`` (bfloat16 autocast); the command's default on CUDA is ``bf16`` (the evidence is in
BENCHMARKS.md, issue 12), on the CPU ``fp32``. The references, the optimum's sampler and the nearest-neighbour
searches are float64 whatever it is. It is part of the evaluation key (only when not ``fp32``, so that evaluations
stored before the option existed keep theirs): evaluations in another arithmetic are stored beside, never mixed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping

import torch

from ...errors import InputError
from ...metrics.copies import COPY_RATIO
from ...nets import NETWORKS, build_from_config, network_config
from ...params import check_params, param
from ...parsing import parse_int_list, parse_seeds
from ...runs import config_key
from ...training import TrainConfig
from .eval import NET_PRECISIONS

#: The registered networks a cell may train (UNets on images).
UNETS = tuple(name for name, spec in NETWORKS.items() if spec.family == "unet")
PROFILES = ("auto", "paper", "cpu-small")
LAUNCHERS = ("inline", "submitit")
CLUSTERS = ("auto", "slurm", "local", "debug")
RESOLUTIONS = (32, 16, 8)
#: The sampler of every evaluation (paper 1 and EDM): Heun on the 18-level EDM grid, 35 denoiser calls.
SAMPLER = {"steps": 18, "solver": "heun", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}
DEFAULT_SAMPLE_SEEDS = "100000-100999"
PAPER_NS = tuple(2**k for k in range(6, 16))


def _ints(name: str) -> Callable[[str], tuple[int, ...]]:
    return lambda text: parse_int_list(text, option=name)


def _seeds(text: str) -> tuple[int, ...]:
    return tuple(parse_seeds(text, option="seeds"))


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in str(text).split(",") if p.strip())
    except ValueError:
        raise InputError(f"eval_at {text!r}: write images seen as numbers, e.g. 1e4,3e4,1e5") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in str(text).split(",") if p.strip())


@dataclass(frozen=True)
class GapConfig:
    """The grid, the budget and the evaluation of a cifar-optimal-gap run (the defaults are the paper profile's;
    see the module docs). Everything here except ``sample_batch`` decides results and is recorded."""

    ns: tuple[int, ...] = param(PAPER_NS, "N values: sizes of the nested training subsets, e.g. 64,128,...,4096.",
                                min=1, max=10**6, parse=_ints("ns"), shown="64,128,...,32768 (paper); 8,64 on the CPU")
    archs: tuple[str, ...] = param(("unet-64", "unet-128", "unet-256"), "Networks, of " + ", ".join(UNETS) + ".",
                                   choices=UNETS, parse=_names, shown="unet-64,unet-128,unet-256 (paper); unet-tiny "
                                   "on the CPU")
    widths: tuple[int, ...] | None = param(None, "Widths (model_channels) for every network of --archs, e.g. "
                                           "64,128,256 with --archs unet-64.", min=1, max=8192, parse=_ints("widths"),
                                           shown="each network's own; 16 on the CPU")
    seeds: tuple[int, ...] = param((0,), "Training seeds (two or more give RP between training seeds), e.g. 0-1.",
                                   min=0, max=2**63 - 1, parse=_seeds, shown="0")
    images: float | None = param(2e6, "Training budget in images seen, the same for every N.", positive=True,
                                 max=1e13, shown="2e6 (paper profile); 24000 on the CPU")
    epochs: float | None = param(None, "Training budget in passes over the subset (a budget growing with N); "
                                 "replaces --images.", positive=True, max=1e9)
    eval_at: tuple[float, ...] | None = param(None, "Evaluation points in images seen, e.g. 1e4,3e4,1e5 (each within "
                                              "the budget of every N).", positive=True, max=1e13, parse=_floats,
                                              shown="--eval-points points, doubling up to the budget")
    eval_points: int = param(8, "Number of evaluation points when --eval-at is not given: the budget, half of it, a "
                             "quarter, ...", min=1, max=64, shown="8; 5 on the CPU")
    subset_seed: int = param(0, "Seed of the class-balanced nested subsets.", min=0, max=2**63 - 1)
    resolution: int = param(32, "Image side: 32 (CIFAR-10), or 16 or 8 by 2x2 or 4x4 box averaging.", min=8,
                            max=32, shown="32; 16 on the CPU")
    held_out: int = param(1000, "Held-out images for the per-sigma distances (the test split, else train images "
                          "outside every subset).", min=1, max=10**6)
    sample_seeds: str = param(DEFAULT_SAMPLE_SEEDS, "Sampler seeds shared by every net and the optimum.",
                              shown="100000-100999; 100000-100199 on the CPU")
    similarity: str = param("pixel", "Similarity for RP and GL: pixel (Pearson correlation of pixels) or a "
                            "TorchScript/ONNX embedding model file (e.g. SSCD).")
    similarity_threshold: float | None = param(None, "Threshold of the similarity.", min=-1.0, max=1.0,
                                               shown="0.9 for pixel, 0.6 for a model")
    copy_ratio: float = param(COPY_RATIO, "A sample copies a training image when d1/d2 is below this.",
                              positive=True, below=1.0, shown="1/3")
    distance_queries: int = param(256, "Queries per noise level and query set for the per-sigma distances (each "
                                  "distance's standard error is stored beside it).", min=1, max=10**6,
                                  shown="256; 64 on the CPU")
    loss_batch: int = param(4096, "Items of the seeded batch on which the training loss and its floor are "
                            "measured.", min=1, max=10**7, shown="4096; 512 on the CPU")
    sample_batch: int = param(1000, "Sampler seeds per batch (memory only; results do not depend on it).", min=1,
                              max=10**6)
    eval_precision: str = param("fp32", "The net's arithmetic at evaluation: fp32 (float32 products), tf32 (TF32 "
                                "products on CUDA) or bf16 (bfloat16 autocast); references stay float64.",
                                choices=NET_PRECISIONS, shown="bf16 on CUDA, fp32 on the CPU")

    def __post_init__(self) -> None:
        check_params(self)

    # -- checks and derived values -------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise :class:`InputError` naming the parameter for any grid no run can use (the data set's size is
        checked when it is read)."""
        for name in ("ns", "archs", "widths", "seeds", "eval_at"):
            values = getattr(self, name)
            if values is not None and not values:
                raise InputError(f"{name} is empty; give at least one value", parameter=name)
            if values is not None and len(set(values)) != len(values):
                raise InputError(f"{name}={','.join(map(str, values))}: a value appears twice", parameter=name)
        if (self.images is None) == (self.epochs is None):
            raise InputError("give the budget as exactly one of images or epochs", parameter=("images", "epochs"))
        if self.resolution not in RESOLUTIONS:
            raise InputError(f"resolution={self.resolution}: choose 32, 16 or 8", parameter="resolution")
        if not parse_seeds(self.sample_seeds, option="sample_seeds"):
            raise InputError("sample_seeds is empty", parameter="sample_seeds")
        for n in self.ns:
            steps = [p.steps for p in self.points(n, 1)]
            if self.eval_at is not None and max(self.eval_at) > self.budget_images(n):
                raise InputError(f"eval_at={max(self.eval_at):g} is beyond the budget of {self.budget_images(n):g} "
                                 f"images at N = {n}; evaluate within the budget or raise it",
                                 parameter=("eval_at", "images", "epochs"))
            if not steps:
                raise InputError("no evaluation point", parameter="eval_at")
        for arch, width in self.nets():
            check_network(arch, width, self.resolution)

    def nets(self) -> list[tuple[str, int | None]]:
        """(arch, width override or None) for every network of the grid."""
        return [(a, w) for a in self.archs for w in (self.widths or (None,))]

    def budget_images(self, n: int) -> float:
        """The budget in images for a subset of N images."""
        return float(self.images) if self.images is not None else float(self.epochs) * n

    def points(self, n: int, batch: int) -> list["EvalPoint"]:
        """The evaluation points of a cell of N images trained with ``batch``: whole steps, ascending, the last
        at the budget."""
        total = max(1, math.ceil(self.budget_images(n) / batch))
        if self.eval_at is not None:
            targets = sorted(self.eval_at)
        else:
            targets = [self.budget_images(n) / 2 ** k for k in range(self.eval_points - 1, -1, -1)]
        steps = sorted({min(total, max(1, math.ceil(t / batch))) for t in targets})
        return [EvalPoint(s, s * batch) for s in steps]

    def eval_record(self) -> dict[str, Any]:
        """What the evaluation results depend on (hashed into the evaluation key)."""
        keep = ("sample_seeds", "similarity", "similarity_threshold", "copy_ratio", "distance_queries", "loss_batch",
                "held_out")
        evaluation = {k: getattr(self, k) for k in keep}
        if self.eval_precision != "fp32":  # fp32 keeps the key it had before the option existed
            evaluation["eval_precision"] = self.eval_precision
        return {"evaluation": evaluation, "sampler": SAMPLER}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class EvalPoint:
    """An evaluation point: optimizer steps done and images seen (steps x batch)."""

    steps: int
    images: int


def check_network(arch: str, width: int | None, resolution: int,
                  overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The network config of (arch, width) on ``resolution`` images with further ``overrides`` (dropout,
    attention), built once on the meta device so that a width the UNet cannot take (e.g. channels its group norm
    cannot split) is refused before any work."""
    options = {**(overrides or {}), **({"model_channels": width} if width is not None else {})}
    try:
        config = network_config(arch, (3, resolution, resolution), **options)
        with torch.device("meta"):
            build_from_config(config)
    except InputError as exc:
        raise InputError(f"archs={arch}, widths={width}: {exc}", parameter=("archs", "widths")) from None
    except Exception as exc:  # noqa: BLE001 - any failure to build is the user's choice of width or size
        raise InputError(f"widths={width}: {arch} cannot be built with this width at {resolution}x{resolution} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); pass a multiple of 16, e.g. 64",
                         parameter="widths") from None
    return config


def net_label(arch: str, width: int | None) -> str:
    """``unet-64``, or ``unet-tiny-w16`` when the width overrides the network's own."""
    return arch if width is None else f"{arch}-w{width}"


@dataclass(frozen=True)
class GapRunOptions:
    """How a call runs; none of it changes results."""

    data: str | None = param(None, "CIFAR-10 in any format mogsim.data.load_cifar10 reads (a folder with "
                             "train.zip/test.zip, an EDM zip, the official archive, class folders).", shown="required")
    out: str = param("runs/cifar-optimal-gap", "Experiment folder: cells/ (one mogsim train run folder per cell), "
                     "cache/, and the combined results.")
    config: str | None = param(None, "JSON or TOML file of option values (options on the command line win).")
    profile: str = param("auto", "Defaults: paper, cpu-small, or auto (paper on a GPU, cpu-small on the CPU); "
                         "options you give override them.", choices=PROFILES)
    device: str = param("auto", "auto, cpu, cuda or cuda:N.")
    shard: str | None = param(None, "i/M: train and evaluate only shard i (0 <= i < M) of the cells; merge later "
                              "with --merge.", shown="all cells")
    merge: bool = param(False, "Only combine the results stored in the cell folders (no training): the grid's cells "
                        "and every other cell of --out, with all their stored evaluation points.")
    cross_from: tuple[str, ...] | None = param(None, "An earlier merge's cross.csv (or the folder holding it, with its "
                                               "cross_per_seed.npz when there): its RP rows between widths and seeds "
                                               "are used for the pairs of this folder's cells whose samples are not "
                                               "here (a row computed from samples wins); repeat for more files.",
                                               repeat=True, parse=lambda text: (text,), shown="none")
    launcher: str = param("inline", "inline (this process) or submitit (a job array; pip install 'mogsim[slurm]').",
                          choices=LAUNCHERS)
    jobs: int | None = param(None, "submitit: number of array tasks (shards).", min=1, max=10**5,
                             shown="one per cell")
    cluster: str = param("auto", "submitit: auto (Slurm when available, else local processes), slurm, local or "
                         "debug.", choices=CLUSTERS)
    slurm_partition: str | None = param(None, "submitit on Slurm: the partition.")
    slurm_minutes: int = param(240, "submitit: time limit of each task in minutes.", min=1, max=10**6)
    gpus_per_task: int = param(1, "submitit: GPUs per task.", min=0, max=64)
    cpus_per_task: int = param(8, "submitit: CPU cores per task.", min=1, max=1024)
    cache_dir: str | None = param(None, "Keep the decoded CIFAR-10 arrays here (decoding 60,000 JPEGs takes ~10 s).")
    report: bool = param(False, "Also write report.pdf (needs reportlab).")
    time_limit: float | None = param(None, "Minutes; stop training cleanly after this, write the results so far "
                                     "(exit code 3); re-run to resume.", positive=True, max=1e7)
    quiet: bool = param(False, "No progress display.")

    def __post_init__(self) -> None:
        check_params(self)

    def shard_pair(self) -> tuple[int, int] | None:
        """(i, M) of ``--shard i/M``, or None."""
        return parse_shard(self.shard) if self.shard is not None else None


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/M"`` -> (i, M) with 0 <= i < M."""
    try:
        i_text, m_text = str(text).split("/")
        i, m = int(i_text), int(m_text)
    except ValueError:
        raise InputError(f"shard={text!r}: write i/M, e.g. 0/4 (shard 0 of 4)", parameter="shard") from None
    if m < 1 or not 0 <= i < m:
        raise InputError(f"shard={text!r}: need 0 <= i < M, e.g. 0/4 .. 3/4", parameter="shard")
    return i, m


# -- profiles ----------------------------------------------------------------------------------------------------------
#: Values of the cpu-small profile (GapConfig and TrainConfig fields); the paper profile is the dataclass defaults.
CPU_SMALL: dict[str, Any] = {
    "ns": (8, 64), "archs": ("unet-tiny",), "widths": (16,), "images": 24000.0, "eval_points": 5, "resolution": 16,
    "sample_seeds": "100000-100199", "distance_queries": 64, "loss_batch": 512,
    "precond": "edm", "batch": 32, "lr": 1e-3, "lr_warmup_images": 0.0,
}
#: Options that replace others: giving the key drops the profile's values of those (``--epochs`` its ``images``,
#: ``--archs`` its ``widths``, which were chosen for its own networks).
REPLACES = {"images": ("epochs",), "epochs": ("images",), "archs": ("widths",)}


def pick_profile(profile: str, device: torch.device) -> str:
    """The profile ``auto`` stands for on ``device``."""
    if profile == "auto":
        return "paper" if device.type == "cuda" else "cpu-small"
    return profile


def profile_values(profile: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's values that the user did not set (``given``: the names set on the command line or in the
    config file), less those that a given option replaces (:data:`REPLACES`)."""
    values = dict(CPU_SMALL) if profile == "cpu-small" else {}
    for name, replaced in REPLACES.items():
        if given.get(name) is not None:
            for other in replaced:
                values.pop(other, None)
    return {k: v for k, v in values.items() if given.get(k) is None}


def deviations(config: GapConfig, train: TrainConfig, profile: str) -> list[str]:
    """Every way the resolved run differs from paper 1's protocol, in words (stored with the results)."""
    out = []
    paper_images = 50e6
    budget = f"{config.images:g} images" if config.images is not None else f"{config.epochs:g} epochs"
    if config.images != paper_images:
        out.append(f"budget {budget} per network (the paper: 50 Mimg); evaluated along training at "
                   f"{len(config.points(config.ns[0], train.batch))} points")
    if config.resolution != 32:
        out.append(f"images reduced to {config.resolution}x{config.resolution} by "
                   f"{32 // config.resolution}x{32 // config.resolution} box averaging (the paper: 32x32)")
    paper_nets = {("unet-64", None), ("unet-128", None), ("unet-256", None), ("unet-64", 64), ("unet-64", 128),
                  ("unet-64", 256)}
    nets = config.nets()
    if not set(nets) <= paper_nets:
        out.append("networks " + ", ".join(net_label(a, w) for a, w in nets) + " (the paper: DDPM++ of width 64, "
                   "128 and 256)")
    if train.precond != "vp":
        out.append(f"{train.precond} preconditioning (the paper: VP)")
    if train.precision != "fp32":
        out.append(f"training arithmetic {train.precision} (the paper: float32)")
    if config.eval_precision != "fp32":
        out.append(f"evaluation arithmetic {config.eval_precision} for the net (the paper: float32); references and "
                   "the optimum's sampler in float64")
    if train.batch != 128 or train.lr != 1e-3:
        out.append(f"batch {train.batch}, lr {train.lr:g} (the paper: 128, 1e-3)")
    out.append(f"learning-rate warm-up {train.lr_warmup_images:g} images, dropout and augmentation as configured "
               "(the paper: EDM's recipe with dropout 0.13 and augmentation p 0.12)")
    if config.similarity == "pixel":
        out.append("similarity: Pearson correlation of pixels (the paper: SSCD descriptors, threshold 0.6)")
    seeds = len(parse_seeds(config.sample_seeds, option="sample_seeds"))
    if seeds != 10000:
        out.append(f"{seeds} sampler seeds (the paper: 10,000)")
    if profile != "paper":
        out.append(f"profile {profile}")
    return out


def cell_key(train: TrainConfig, data_record: Mapping[str, Any]) -> str:
    """The key of a cell's run folder: everything its training trajectory depends on (not the budget, which only
    says where to stop, and not the data's path)."""
    data = {k: v for k, v in data_record.items() if k != "source"}
    return config_key({"train": train.to_dict(), "data": data})


def with_net(train: TrainConfig, net: dict[str, Any], seed: int) -> TrainConfig:
    """``train`` for one cell: its network and training seed."""
    return replace(train, net=net, seed=seed)


