"""Named network configurations, built from a name plus overrides, and parameter counts.

=============  ======================================================================  ============
name           configuration (DDPM++ UNet unless noted)                                parameters
=============  ======================================================================  ============
unet-256       width 256, channel_mult (2,2,2), 4 blocks/level, attention at 16x16     222,745,603
unet-128       width 128, as above: EDM's CIFAR-10 DDPM++ (EDM reports 55.7M)         55,732,739
unet-64        width 64, as above (EDM's code gives 13.96M)                            13,956,355
unet-small     width 64, channel_mult (1,2,2), 2 blocks/level, attention at 16x16      6,989,891
unet-tiny      width 32, channel_mult (1,2,2), 1 block/level, attention at 16x16       1,260,547
unet-vector    vectors (B, n) reshaped to ``image_shape`` (default 3x4x4, n = 48);     4,115,011
               width 64, channel_mult (1,2), 2 blocks/level, attention at 2x2
mlp            vectors (B, n): width 256, 3 hidden layers, shared noise embedding;      173,104
               ``members=M`` gives M independent MLPs in batched products
lowrank        paper 2's low-rank denoiser (:class:`~mogsim.nets.lowrank.                  384
               LowRankDenoiser`): K = 2 orthonormal bases of rank d = 4, soft gate;
               a denoiser by construction (train it with ``precond="identity"``)
=============  ======================================================================  ============

Every config takes ``members=M``: the MLP stacks M members' weights in batched products; a UNet family builds a
:class:`~mogsim.nets.members.MemberList` of M separate UNets (the trainer runs them side by side on CUDA streams).

Counts are for CIFAR-sized inputs (3x32x32) or n = 48. Dropout is 0 in every config (the authors trained with
0.13: pass ``dropout=0.13``). Every config accepts overrides, e.g.
``build_network("unet-64", dropout=0.13)`` or ``build_network("unet-tiny", sample_shape=(3, 4, 4),
channel_mult=(1, 2), attn_resolutions=(2,))``. The UNets' attention resolutions are given for 32x32 images; on
another size a config's default keeps the same relative place (16 at 32x32 becomes 4 at 8x8) unless
``attn_resolutions`` is passed. :func:`network_config` returns the resolved keyword arguments (the attention
resolutions used included), which :func:`build_from_config` turns back into the same network (checkpoints store
it). :class:`NetOptions` is the command line's choice of network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from torch import nn

from ..errors import InputError
from ..params import check_params, param
from ..parsing import whole_number
from .lowrank import LowRankDenoiser
from .members import MemberList
from .mlp import MLP
from .unet import UNet, VectorUNet


@dataclass(frozen=True)
class NetSpec:
    """A named configuration: the family (``unet``, ``unet-vector``, ``mlp``) and its default keyword arguments."""

    family: str
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_DDPMPP = dict(channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,), dropout=0.0)

NETWORKS: dict[str, NetSpec] = {
    "unet-256": NetSpec("unet", dict(model_channels=256, **_DDPMPP), "DDPM++ width 256"),
    "unet-128": NetSpec("unet", dict(model_channels=128, **_DDPMPP), "DDPM++ width 128 (EDM CIFAR-10)"),
    "unet-64": NetSpec("unet", dict(model_channels=64, **_DDPMPP), "DDPM++ width 64"),
    "unet-small": NetSpec("unet", dict(model_channels=64, channel_mult=(1, 2, 2), num_blocks=2,
                                       attn_resolutions=(16,), dropout=0.0), "small DDPM++ for short runs"),
    "unet-tiny": NetSpec("unet", dict(model_channels=32, channel_mult=(1, 2, 2), num_blocks=1,
                                      attn_resolutions=(16,), dropout=0.0), "tiny DDPM++ for tests/smoke runs"),
    "unet-vector": NetSpec("unet-vector", dict(image_shape=(3, 4, 4), model_channels=64, channel_mult=(1, 2),
                                               num_blocks=2, attn_resolutions=(2,), dropout=0.0),
                           "DDPM++ on vectors reshaped to small images"),
    "mlp": NetSpec("mlp", dict(width=256, depth=3, noise_channels=64), "noise-conditioned MLP on vectors"),
    "lowrank": NetSpec("lowrank", dict(components=2, rank=4, gate="soft", mutually_orthogonal=False, seed=0),
                       "paper 2's low-rank denoiser (MoLRG posterior mean with learnable bases)"),
}

_IMAGE_SHAPE = (3, 32, 32)
_VECTOR_SHAPE = (48,)


def list_networks() -> list[str]:
    """The registered names."""
    return list(NETWORKS)


def _spec(name: str) -> NetSpec:
    try:
        return NETWORKS[str(name).strip().lower()]
    except KeyError:
        raise InputError(f"arch={name!r} is not one of {', '.join(NETWORKS)}", parameter="arch") from None


def network_config(name: str, sample_shape: Sequence[int] | None = None, **overrides: Any) -> dict[str, Any]:
    """The resolved, JSON-ready configuration ``{"name", "family", "sample_shape", "kwargs"}`` of a network.

    ``sample_shape`` is the shape of one sample: (C, R, R) for ``unet*`` (default 3x32x32), (n,) or any shape
    for ``mlp`` and ``unet-vector`` (default (48,)). ``overrides`` replace the named config's defaults;
    ``None`` values are ignored (so CLI options left unset keep the defaults).
    """
    spec = _spec(name)
    kwargs = dict(spec.defaults)
    unknown = [k for k in overrides if k not in _allowed_keys(spec.family)]
    if unknown:
        raise InputError(f"network {name}: unknown option(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(sorted(_allowed_keys(spec.family)))}")
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    default_shape = _IMAGE_SHAPE if spec.family == "unet" else _VECTOR_SHAPE
    shape = tuple(int(s) for s in (sample_shape if sample_shape is not None else default_shape))
    if spec.family == "unet":
        if len(shape) != 3 or shape[1] != shape[2]:
            raise InputError(f"{name} needs square images (C, R, R); got sample shape {shape}")
        kwargs.update(in_channels=shape[0], img_resolution=shape[1])
        if overrides.get("attn_resolutions") is None:
            kwargs["attn_resolutions"] = _scaled_attention(kwargs, shape[1])
    else:
        kwargs["dim"] = math.prod(shape)
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    return {"name": str(name).strip().lower(), "family": spec.family, "sample_shape": list(shape), "kwargs": kwargs}


def _scaled_attention(kwargs: dict[str, Any], resolution: int) -> tuple[int, ...]:
    """A config's default attention resolutions (given for 32x32) at the same relative place for ``resolution``."""
    levels = len(kwargs.get("channel_mult", (2, 2, 2)))
    available = [resolution >> i for i in range(levels)]
    default = tuple(kwargs.get("attn_resolutions", ()))
    if all(r in available for r in default):
        return default
    return tuple(sorted({r * resolution // 32 for r in default} & set(available), reverse=True))


def _allowed_keys(family: str) -> set[str]:
    unet = {"model_channels", "channel_mult", "channel_mult_emb", "num_blocks", "attn_resolutions", "dropout",
            "num_heads", "adaptive_scale", "noise_channels", "max_positions", "members"}
    if family == "unet":
        return unet | {"out_channels"}
    if family == "unet-vector":
        return unet | {"image_shape"}
    if family == "lowrank":
        return {"components", "rank", "gate", "mutually_orthogonal", "seed", "members", "dtype"}
    return {"width", "depth", "noise_channels", "max_positions", "members"}


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """Build the network described by :func:`network_config` (e.g. as stored in a checkpoint)."""
    family, kwargs = config["family"], dict(config["kwargs"])
    if family == "mlp":
        return MLP(**kwargs)
    if family == "lowrank":
        return LowRankDenoiser(**kwargs)
    builders = {"unet": UNet, "unet-vector": VectorUNet}
    if family not in builders:
        raise InputError(f"unknown network family {family!r}")
    members = whole_number(kwargs.pop("members", 1), "members", lo=1)
    if members == 1:
        return builders[family](**kwargs)
    return MemberList([builders[family](**kwargs) for _ in range(members)])


def build_network(name: str, sample_shape: Sequence[int] | None = None, **overrides: Any) -> nn.Module:
    """Build a registered network, e.g. ``build_network("unet-64")`` or ``build_network("mlp", (48,))``."""
    return build_from_config(network_config(name, sample_shape, **overrides))


@dataclass(frozen=True)
class NetOptions:
    """The command line's choice of network: a registered name and the overrides users usually want."""

    arch: str = param("unet-64", "Network: " + ", ".join(NETWORKS) + ".", choices=tuple(NETWORKS))
    width: int | None = param(None, "Width override: model_channels of a UNet, width of the MLP.", min=1, max=8192,
                              shown="the network's")
    dropout: float | None = param(None, "Dropout of a UNet (the authors used 0.13).", min=0.0, below=1.0,
                                  shown="0")
    attn_resolutions: tuple[int, ...] | None = param(
        None, "UNet resolutions with self-attention, e.g. 8,4.", min=1, max=4096,
        shown="the network's, at the same relative place for the image size")

    def __post_init__(self) -> None:
        check_params(self)

    def network_config(self, sample_shape: Sequence[int]) -> dict[str, Any]:
        """The :func:`network_config` of this choice for samples of ``sample_shape``."""
        family = _spec(self.arch).family
        overrides: dict[str, Any] = {}
        if self.width is not None:
            overrides["width" if family == "mlp" else "model_channels"] = self.width
        if family == "lowrank" and self.width is not None:
            raise InputError("width: the low-rank denoiser has none (its size is K and d)", parameter="width")
        for name in ("dropout", "attn_resolutions"):
            if getattr(self, name) is not None:
                if family in ("mlp", "lowrank"):
                    noun = "MLP" if family == "mlp" else "low-rank denoiser"
                    raise InputError(f"{name}: applies to UNets; the {noun} has none", parameter=name)
                overrides[name] = getattr(self, name)
        return network_config(self.arch, sample_shape, **overrides)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters, counted once even if shared."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
