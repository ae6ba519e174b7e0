"""A UNet of the DDPM++ family (Song et al. 2021, as configured for CIFAR-10 by Karras et al. 2022).

Written from the papers' descriptions (not from either codebase):

* a 3x3 input convolution, then per resolution level ``num_blocks`` residual blocks, a down-sampling residual
  block between levels (2x2 average pooling), and the mirrored decoder with an up-sampling residual block
  (nearest neighbour) and ``num_blocks + 1`` blocks per level, each fed the matching encoder activation
  (U-Net skip connection, concatenated on channels);
* residual block: GroupNorm -> SiLU -> 3x3 conv -> add a per-block affine map of the noise embedding ->
  GroupNorm -> SiLU -> dropout -> 3x3 conv, plus a 1x1 projection of the input when the channel count or
  resolution changes; the sum is multiplied by ``1/sqrt(2)``. ``adaptive_scale=True`` replaces the additive
  embedding by a scale/shift after the norm (``norm(h) * (1 + scale) + shift``, the ADM form; 4.3M more
  parameters at width 128);
* single-head self-attention (after the residual branch, also scaled by ``1/sqrt(2)``) at the resolutions in
  ``attn_resolutions`` (16x16 for CIFAR), and in the first block of the bottleneck;
* noise embedding: sinusoidal features of the scalar noise label ``c_noise`` -> Linear -> SiLU -> Linear -> SiLU;
* output: GroupNorm -> SiLU -> 3x3 conv.

Under bf16/fp16 autocast, group norm runs in the activations' dtype (float32 statistics inside the kernel) rather
than autocast's float32, which keeps the whole activation stream in bf16 (see ``_norm``). Any memory layout works;
attention keeps channels_last storage without copies.

``model_channels`` is the width the papers call "UNet-64/128/256"; level ``i`` has ``model_channels *
channel_mult[i]`` channels. Small images work with fewer levels: a 3x4x4 image (a 48-dimensional vector) with
``channel_mult=(1, 2)`` runs at 4x4 and 2x2 (``attn_resolutions=(2,)``); :class:`VectorUNet` does the reshape.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .layers import init_layer as _init_
from .layers import positional_embedding

_SKIP_SCALE = 1.0 / math.sqrt(2.0)


def _group_norm(channels: int, eps: float = 1e-6) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels (the DDPM++ rule)."""
    return nn.GroupNorm(num_groups=min(32, max(1, channels // 4)), num_channels=channels, eps=eps)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map (residual, scaled by 1/sqrt(2))."""

    def __init__(self, channels: int, num_heads: int = 1) -> None:
        super().__init__()
        if channels % num_heads:
            raise InputError(f"attention: {channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = _group_norm(channels)
        self.qkv = _init_(nn.Conv2d(channels, 3 * channels, 1), gain=math.sqrt(0.2))
        self.proj = _init_(nn.Conv2d(channels, channels, 1), gain=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        heads = self.num_heads
        # The 3C channels of qkv split as (3, heads, C/heads). Going through (B, H, W, 3C) keeps the head dim
        # innermost: a view of channels_last storage, and the last-dim-contiguous layout SDPA's kernels want.
        qkv = self.qkv(_norm(self.norm, x)).permute(0, 2, 3, 1).reshape(b, h * w, 3, heads, c // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, HW, C/heads)
        a = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C/heads)) v
        a = a.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous(memory_format=_memory_format(x))
        return (x + self.proj(a)) * _SKIP_SCALE


def _is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-d tensor is stored NHWC and not also NCHW. Reads the strides (which ``vmap`` allows, unlike
    ``is_contiguous(memory_format=...)``); the answer only chooses a memory layout, never the values."""
    if x.ndim != 4 or x.is_contiguous():
        return False
    _, c, h, w = x.shape
    _, sc, sh, sw = x.stride()
    return (c == 1 or sc == 1) and (w == 1 or sw == c) and (h == 1 or sh == w * c)


def _norm(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, in x's own dtype also under autocast.

    Autocast runs group norm in float32 and returns float32, so each norm of a bf16 activation would write a
    float32 map that SiLU reads and writes again and the next convolution casts back. Here a bf16/fp16 input is
    normalised by the native kernel in its own dtype (statistics accumulate in float32 inside the kernel; gamma and
    beta are cast as autocast casts convolution weights); the output is rounded to bf16 before SiLU instead of
    after. On an H200 this made the captured unet-64 step 10% faster and cut peak memory from 7.4 to 4.3 GiB
    (BENCHMARKS.md). Float32 and float64 inputs take exactly ``norm(x)``.
    """
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype == torch.get_autocast_dtype(device):
        with torch.autocast(device, enabled=False):
            weight = norm.weight.to(x.dtype) if norm.weight is not None else None
            bias = norm.bias.to(x.dtype) if norm.bias is not None else None
            return F.group_norm(x, norm.num_groups, weight, bias, norm.eps)
    return norm(x)


def _norm_silu(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """``silu(norm(x))`` (see :func:`_norm`)."""
    return F.silu(_norm(norm, x))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """The memory format to give a new tensor that meets ``x`` (mixed layouts make kernels convert)."""
    return torch.channels_last if _is_channels_last(x) else torch.contiguous_format


class ResBlock(nn.Module):
    """DDPM++ residual block with noise-conditioned scale/shift, optional resampling and attention."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *, dropout: float = 0.0,
                 resample: str | None = None, attention: bool = False, num_heads: int = 1,
                 adaptive_scale: bool = False) -> None:
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"resample must be None, 'down' or 'up', not {resample!r}")
        self.in_channels, self.out_channels, self.resample = in_channels, out_channels, resample
        self.norm0 = _group_norm(in_channels)
        self.conv0 = _init_(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.adaptive_scale = adaptive_scale
        self.affine = _init_(nn.Linear(emb_channels, (2 if adaptive_scale else 1) * out_channels))
        self.norm1 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _init_(nn.Conv2d(out_channels, out_channels, 3, padding=1), gain=1e-5)
        self.skip = (_init_(nn.Conv2d(in_channels, out_channels, 1))
                     if in_channels != out_channels or resample is not None else None)
        self.attn = SelfAttention(out_channels, num_heads) if attention else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(self._resample(_norm_silu(self.norm0, x)))
        params = self.affine(emb).unsqueeze(-1).unsqueeze(-1)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            h = F.silu(torch.addcmul(shift, _norm(self.norm1, h), scale + 1.0))
        else:
            h = _norm_silu(self.norm1, h + params)
        h = self.conv1(self.dropout(h))
        x = self._resample(x)
        if self.skip is not None:
            x = self.skip(x)
        x = (x + h) * _SKIP_SCALE
        if self.attn is not None:
            x = self.attn(x)
        return x


class UNet(nn.Module):
    """DDPM++ UNet ``F(x, c_noise)`` for square images (B, C, R, R); ``c_noise`` is a (B,) tensor.

    The defaults are EDM's CIFAR-10 DDPM++ configuration at width 128 (except dropout, 0.13 there).
    """

    def __init__(self, *, img_resolution: int = 32, in_channels: int = 3, out_channels: int | None = None,
                 model_channels: int = 128, channel_mult: Sequence[int] = (2, 2, 2), channel_mult_emb: int = 4,
                 num_blocks: int = 4, attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0,
                 num_heads: int = 1, adaptive_scale: bool = False, noise_channels: int | None = None,
                 max_positions: float = 10000.0) -> None:
        super().__init__()
        channel_mult = tuple(int(m) for m in channel_mult)
        attn_resolutions = tuple(int(r) for r in attn_resolutions)
        out_channels = in_channels if out_channels is None else out_channels
        levels = len(channel_mult)
        if levels < 1 or min(channel_mult) < 1:
            raise InputError("channel_mult must be a non-empty sequence of positive integers, e.g. (2, 2, 2)")
        if img_resolution < 1 or img_resolution % (2 ** (levels - 1)):
            raise InputError(f"img_resolution {img_resolution} must be divisible by 2^(levels-1) = "
                             f"{2 ** (levels - 1)}; use fewer channel_mult entries for small images")
        resolutions = [img_resolution >> i for i in range(levels)]
        bad = [r for r in attn_resolutions if r not in resolutions]
        if bad:
            raise InputError(f"attn_resolutions {bad} are not among this UNet's resolutions {resolutions}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout {dropout} must be in [0, 1)")
        self.config = dict(img_resolution=img_resolution, in_channels=in_channels, out_channels=out_channels,
                           model_channels=model_channels, channel_mult=list(channel_mult),
                           channel_mult_emb=channel_mult_emb, num_blocks=num_blocks,
                           attn_resolutions=list(attn_resolutions), dropout=dropout, num_heads=num_heads,
                           adaptive_scale=adaptive_scale, noise_channels=noise_channels, max_positions=max_positions)
        self.img_resolution, self.in_channels, self.out_channels = img_resolution, in_channels, out_channels
        self.noise_channels = noise_channels or model_channels
        self.max_positions = max_positions
        emb = model_channels * channel_mult_emb
        self.map0 = _init_(nn.Linear(self.noise_channels, emb))
        self.map1 = _init_(nn.Linear(emb, emb))
        kw = dict(emb_channels=emb, dropout=dropout, num_heads=num_heads, adaptive_scale=adaptive_scale)

        # Encoder: record each output's channel count for the decoder's skip connections.
        self.conv_in = _init_(nn.Conv2d(in_channels, model_channels, 3, padding=1))
        self.enc = nn.ModuleList()
        skips = [model_channels]
        c = model_channels
        for level, mult in enumerate(channel_mult):
            res = resolutions[level]
            if level > 0:
                self.enc.append(ResBlock(c, c, resample="down", **kw))
                skips.append(c)
            for _ in range(num_blocks):
                self.enc.append(ResBlock(c, model_channels * mult, attention=res in attn_resolutions, **kw))
                c = model_channels * mult
                skips.append(c)

        # Decoder: bottleneck pair, then per level an up-sampling block and num_blocks + 1 blocks with skips.
        self.dec = nn.ModuleList()
        self._dec_takes_skip: list[bool] = []
        for level in reversed(range(levels)):
            res = resolutions[level]
            if level == levels - 1:
                self.dec.extend([ResBlock(c, c, attention=True, **kw), ResBlock(c, c, **kw)])
                self._dec_takes_skip += [False, False]
            else:
                self.dec.append(ResBlock(c, c, resample="up", **kw))
                self._dec_takes_skip.append(False)
            for idx in range(num_blocks + 1):
                cin = c + skips.pop()
                c = model_channels * channel_mult[level]
                self.dec.append(ResBlock(cin, c, attention=(idx == num_blocks and res in attn_resolutions), **kw))
                self._dec_takes_skip.append(True)
        assert not skips
        self.norm_out = _group_norm(c, eps=1e-6)
        self.conv_out = _init_(nn.Conv2d(c, out_channels, 3, padding=1), gain=1e-5)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        """``F(x, c_noise)``: x (B, C, R, R), noise_labels (B,) -> (B, out_channels, R, R)."""
        pe = positional_embedding(noise_labels.reshape(-1), self.noise_channels, self.max_positions)
        emb = F.silu(self.map1(F.silu(self.map0(pe.to(self.map0.weight.dtype)))))
        h = self.conv_in(x)
        hs = [h]
        for block in self.enc:
            h = block(h, emb)
            hs.append(h)
        for block, takes_skip in zip(self.dec, self._dec_takes_skip):
            if takes_skip:
                h = torch.cat([h, hs.pop()], dim=1)
            h = block(h, emb)
        return self.conv_out(_norm_silu(self.norm_out, h))


class VectorUNet(nn.Module):
    """A :class:`UNet` on vectors (B, n): each vector is reshaped to an image ``image_shape`` = (C, H, W).

    For the MoLRG score-matching experiment with n = 48: ``VectorUNet(48, (3, 4, 4), channel_mult=(1, 2),
    attn_resolutions=(2,))`` runs a two-level UNet at 4x4 and 2x2.
    """

    def __init__(self, dim: int, image_shape: Sequence[int] = (3, 4, 4), **unet_kwargs) -> None:
        super().__init__()
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or image_shape[1] != image_shape[2] or math.prod(image_shape) != dim:
            raise InputError(f"image_shape {image_shape} must be (C, H, H) with C*H*H = dim = {dim}")
        self.dim, self.image_shape = dim, image_shape
        self.unet = UNet(img_resolution=image_shape[1], in_channels=image_shape[0], **unet_kwargs)
        self.config = dict(dim=dim, image_shape=list(image_shape), **{k: v for k, v in self.unet.config.items()
                                                                      if k not in ("img_resolution", "in_channels",
                                                                                   "out_channels")})

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        """x (B, dim) -> (B, dim)."""
        b = x.shape[0]
        return self.unet(x.reshape(b, *self.image_shape), noise_labels).reshape(b, self.dim)
