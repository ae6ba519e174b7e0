"""The UNet's speed changes (issue 11) keep its mathematics and its checkpoints.

The reference is the UNet as it was before them (commit 06ac92b): group norm through the module, under autocast in
float32, and attention by the explicit formula ``softmax(q k^T / sqrt(d)) v`` on the channel split (3, heads, d).
"""

from __future__ import annotations

import copy
import hashlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

import mogsim.nets.unet as unet
from mogsim.nets import UNet, build_network

_SMALL = dict(img_resolution=8, in_channels=3, model_channels=16, channel_mult=(1, 2), num_blocks=1,
              attn_resolutions=(4,))


def _previous_attention(self: unet.SelfAttention, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    heads, d = self.num_heads, c // self.num_heads
    qkv = self.qkv(self.norm(x)).reshape(b, 3, heads, d, h * w)
    q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (B, heads, HW, d)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v
    return (x + self.proj(a.transpose(-1, -2).reshape(b, c, h, w))) * unet._SKIP_SCALE


@pytest.fixture
def previous_unet(monkeypatch):
    """Switch mogsim.nets.unet to the previous computation (inside the test only)."""

    def use() -> None:
        monkeypatch.setattr(unet, "_norm", lambda norm, x: norm(x))
        monkeypatch.setattr(unet.SelfAttention, "forward", _previous_attention)

    return use


def _random_net(dtype: torch.dtype = torch.float64, **kw) -> UNet:
    """A small UNet with every parameter random (so the near-zero initial output layers do not hide anything)."""
    torch.manual_seed(0)
    net = UNet(**{**_SMALL, **kw}).to(dtype)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.3)
    return net


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("kw", [{}, {"num_heads": 2}, {"adaptive_scale": True}])
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_matches_previous_unet_in_float64(previous_unet, kw, channels_last):
    net = _random_net(**kw)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    c = torch.randn(3, dtype=torch.float64)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    out = net(x, c)
    previous_unet()
    ref = net(x, c)
    assert ref.norm() > 1.0
    assert _rel(out, ref) < 1e-12


@settings(max_examples=20, deadline=None)
@given(heads=st.sampled_from([1, 2, 4]), width=st.sampled_from([8, 16]), res=st.sampled_from([4, 8]),
       batch=st.integers(1, 3), channels_last=st.booleans(), seed=st.integers(0, 2**16))
def test_attention_matches_previous_for_any_shape(heads, width, res, batch, channels_last, seed):
    torch.manual_seed(seed)
    attn = unet.SelfAttention(2 * width, heads).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_()
    x = torch.randn(batch, 2 * width, res, res, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = attn(x)
    assert unet._is_channels_last(out) == (channels_last and res > 1)
    assert _rel(out, _previous_attention(attn, x)) < 1e-12


def test_backward_matches_previous_unet_in_float64(previous_unet):
    net = _random_net(num_heads=2)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    c = torch.randn(2, dtype=torch.float64)
    net(x, c).square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    previous_unet()
    net(x, c).square().sum().backward()
    assert max(_rel(g, p.grad) for g, p in zip(grads, net.parameters()) if p.grad.norm() > 0) < 1e-12


def test_state_dict_keys_and_shapes_unchanged():
    # sha256 of the sorted "key:shape" lines, computed with the UNet of commit 06ac92b: old checkpoints load.
    def digest(net: nn.Module) -> str:
        lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(net.state_dict().items()))
        return hashlib.sha256(lines.encode()).hexdigest()

    with torch.device("meta"):
        assert digest(build_network("unet-64")) == "6576ae3aebf64f00797369831e5a4a89e6060d34775fa5f26234e303e3c3c50d"
        assert digest(build_network("unet-64", adaptive_scale=True, num_heads=2)) == (
            "994cc399add62cf4ec6ca09e77227dd3e998fe3b3463548d409e625d0d68afa7")


def test_norm_keeps_low_precision_under_autocast_and_is_exact_otherwise():
    torch.manual_seed(0)
    norm = nn.GroupNorm(4, 16)
    x = torch.randn(2, 16, 5, 5)
    assert torch.equal(unet._norm(norm, x), norm(x))  # float32, no autocast: exactly the module
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xb = x.to(torch.bfloat16)
        out = unet._norm(norm, xb)
        assert torch.equal(unet._norm(norm, x), norm(x))  # float32 input under autocast: untouched
    assert out.dtype == torch.bfloat16  # autocast would have returned float32
    assert _rel(out, norm(xb.float())) < 1e-2


def test_bf16_autocast_forward_is_as_accurate_as_before(previous_unet):
    net64 = _random_net()
    net = copy.deepcopy(net64).float()
    x = torch.randn(4, 3, 8, 8)
    c = torch.randn(4)
    ref = net64(x.double(), c.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        new = net(x, c)
        previous_unet()
        old = net(x, c)
    assert new.dtype == old.dtype == torch.bfloat16
    new_err, old_err = _rel(new, ref), _rel(old, ref)
    assert new_err < 0.05 and new_err < 2 * old_err


def test_stacked_members_through_vmap_match_each_net():
    # The member axis of several models at once: vmap over stacked parameters (grouped convolutions inside).
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(UNet(**_SMALL).double())
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    x = torch.randn(3, 2, 3, 8, 8, dtype=torch.float64)
    c = torch.randn(3, 2, dtype=torch.float64)
    out = vmap(lambda p, b, xx, cc: functional_call(base, (p, b), (xx, cc)))(params, buffers, x, c)
    for m, net in enumerate(nets):
        assert _rel(out[m], net(x[m], c[m])) < 1e-12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_channels_last_on_cuda_matches_contiguous():
    net = _random_net(torch.float32).cuda()
    x = torch.randn(4, 3, 8, 8, device="cuda")
    c = torch.randn(4, device="cuda")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # matmuls: TF32 is off by default
        ref = net(x, c)
        net_cl = net.to(memory_format=torch.channels_last)
        out = net_cl(x.contiguous(memory_format=torch.channels_last), c)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert _rel(out, ref) < 1e-5
