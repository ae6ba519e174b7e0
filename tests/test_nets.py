"""Networks: registry parameter counts, UNet/MLP shapes, and the preconditioned denoiser's protocol."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mogsim.conventions import EDMPrecond, VPPrecond
from mogsim.denoiser import Denoiser
from mogsim.errors import InputError
from mogsim.nets import (MLP, NETWORKS, PreconditionedDenoiser, UNet, VectorUNet, build_from_config, build_network,
                         count_parameters, list_networks, network_config, positional_embedding)
from mogsim.training import make_precond



def _meta_count(name: str, **kw) -> int:
    with torch.device("meta"):
        return count_parameters(build_network(name, **kw))


def test_ddpmpp_parameter_counts_match_edm():
    # EDM's DDPM++ (channel_mult 2,2,2; 4 blocks; attention at 16x16): 13.96M at width 64, 55.7M at width 128.
    assert _meta_count("unet-64") == 13_956_355
    assert abs(_meta_count("unet-128") / 55.73e6 - 1) < 1e-3
    assert _meta_count("unet-256") > 4 * 55e6


def test_every_registered_network_builds_and_is_smaller_than_unet64_when_small():
    counts = {name: _meta_count(name) for name in list_networks()}
    assert set(counts) == set(NETWORKS)
    for small in ("unet-small", "unet-tiny", "unet-vector", "mlp"):
        assert 0 < counts[small] < counts["unet-64"]


def test_adaptive_scale_adds_affine_parameters():
    assert _meta_count("unet-64", adaptive_scale=True) > _meta_count("unet-64")


def test_unet_forward_shape_cifar():
    torch.manual_seed(0)
    net = build_network("unet-tiny")
    x = torch.randn(2, 3, 32, 32)
    y = net(x, torch.tensor([0.1, -0.3]))
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_unet_on_small_images_and_vectors():
    torch.manual_seed(0)
    net = build_network("unet-tiny", (3, 4, 4), channel_mult=(1, 2), attn_resolutions=(2,))
    assert net(torch.randn(3, 3, 4, 4), torch.zeros(3)).shape == (3, 3, 4, 4)
    vec = build_network("unet-vector", (48,), model_channels=16, num_blocks=1)
    assert isinstance(vec, VectorUNet)
    assert vec(torch.randn(5, 48), torch.zeros(5)).shape == (5, 48)
    mlp = build_network("mlp", (48,), width=32, depth=2)
    assert isinstance(mlp, MLP)
    assert mlp(torch.randn(5, 48), torch.zeros(5)).shape == (5, 48)


def test_unet_rejects_impossible_configs():
    with pytest.raises(InputError, match="divisible"):
        UNet(img_resolution=6, model_channels=8, channel_mult=(1, 1, 1))
    with pytest.raises(InputError, match="attn_resolutions"):
        UNet(img_resolution=4, model_channels=8, channel_mult=(1, 2), attn_resolutions=(16,))
    with pytest.raises(InputError, match="image_shape"):
        VectorUNet(50, (3, 4, 4))
    with pytest.raises(InputError, match="not one of"):
        build_network("unet-1000")
    with pytest.raises(InputError, match="unknown option"):
        build_network("mlp", (48,), model_channels=3)
    with pytest.raises(InputError, match="square"):
        build_network("unet-tiny", (48,))


def test_default_attention_keeps_its_relative_place_on_other_image_sizes():
    """unet-tiny's attention at 16x16 (for 32x32 images) moves to 4x4 on 8x8 images and stays at 16 for 64x64;
    an explicit choice is kept, and an impossible one is an error naming the option."""
    assert network_config("unet-tiny", (3, 8, 8))["kwargs"]["attn_resolutions"] == [4]
    assert network_config("unet-64", (3, 64, 64))["kwargs"]["attn_resolutions"] == [16]
    assert network_config("unet-tiny", (3, 8, 8), attn_resolutions=(8,))["kwargs"]["attn_resolutions"] == [8]
    with torch.device("meta"):
        assert build_network("unet-tiny", (3, 8, 8)) is not None
        with pytest.raises(InputError, match="attn_resolutions"):
            build_network("unet-tiny", (3, 8, 8), attn_resolutions=(16,))


def test_network_config_round_trip_is_json_ready():
    import json

    cfg = network_config("unet-tiny", (3, 8, 8), channel_mult=(1, 2), attn_resolutions=(4,), dropout=None)
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["kwargs"]["dropout"] == 0.0  # None overrides keep the default
    torch.manual_seed(1)
    a = build_from_config(cfg)
    torch.manual_seed(1)
    b = build_network("unet-tiny", (3, 8, 8), channel_mult=(1, 2), attn_resolutions=(4,))
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_positional_embedding():
    e = positional_embedding(torch.tensor([0.0, 1.0]), 8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0, :4], torch.ones(4)) and torch.allclose(e[0, 4:], torch.zeros(4))


class _Const(nn.Module):
    """F(x, c) = value everywhere; records its inputs."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))
        self.seen: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        self.seen = (x, c)
        return torch.zeros_like(x) + self.value


@pytest.mark.parametrize("precond", [EDMPrecond(), VPPrecond()])
def test_precond_formula(precond):
    net = _Const(1.0)
    den = PreconditionedDenoiser(net, precond)
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    sigma = torch.tensor([0.01, 1.0, 50.0], dtype=torch.float64)
    s = sigma.reshape(-1, 1, 1)
    d = den(x, sigma)
    expected = precond.c_skip(s) * x + precond.c_out(s) * 1.0
    assert d.dtype == torch.float64 and torch.allclose(d, expected, rtol=1e-6, atol=1e-6)
    assert torch.allclose(net.seen[0].double(), precond.c_in(s) * x, rtol=1e-6)
    assert torch.allclose(net.seen[1].double(), precond.c_noise(sigma), rtol=1e-5)


def test_preconditioned_unet_implements_the_denoiser_protocol():
    torch.manual_seed(0)
    den = PreconditionedDenoiser(build_network("unet-tiny", (3, 8, 8), channel_mult=(1, 2), attn_resolutions=(4,)),
                                 make_precond("edm")).eval()
    assert isinstance(den, Denoiser)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        d_float = den(x, 0.7)
        d_vec = den(x, torch.full((4,), 0.7))
        d64 = den(x.double(), 0.7)
        d_each = torch.cat([den(x[i:i + 1], torch.tensor([0.7])) for i in range(4)])
    assert d_float.shape == x.shape and d_float.dtype == torch.float32 and d_float.device == x.device
    assert d64.dtype == torch.float64 and torch.allclose(d64.float(), d_float, atol=1e-5)
    assert torch.allclose(d_float, d_vec) and torch.allclose(d_float, d_each, atol=1e-5)
    with pytest.raises(InputError):
        den(x, 0.0)
    with pytest.raises(InputError):
        den(x, torch.ones(3))
    with pytest.raises(InputError):
        den(x.long(), 1.0)
