"""The training engine's member axis: M independent models in one Trainer, per-member clipping and sigma_data, the
one MLP, element-wise Adam, the data order, and the identity preconditioning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mogsim.conventions import EDMPrecond
from mogsim.errors import InputError
from mogsim.nets import MLP, IdentityPrecond, PreconditionedDenoiser, network_config
from mogsim.nets.precond import per_member
from mogsim.training import Adam, DataOrder, EDMLoss, IdentityLoss, RuntimeOptions, TrainConfig, Trainer, make_loss
from mogsim.training.loop import clip_member_grads_, member_grad_norms

QUIET = RuntimeOptions(progress="none", log_every=5)


def sets(*sizes: int, dim: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=g) * (0.5 + i) for i, n in enumerate(sizes)]


def member_config(members: int, sigma_data: tuple[float, ...], **kw) -> TrainConfig:
    base = dict(net=network_config("mlp", (6,), width=16, depth=2, members=members), precond="edm",
                sigma_data=sigma_data, batch=8, lr=3e-3, lr_warmup_images=40, ema_halflife_images=80, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_a_member_follows_the_trajectory_of_a_model_trained_alone_on_its_rows():
    """Exactly what holds: member m's update depends only on its data, weights, optimizer state and row m of the
    step's random draws. A one-member Trainer started from member 1's weights and fed row 1 of every batch has
    the same losses (bitwise) and ends with the same weights, EMA and Adam moments, to float32 rounding (one model
    sums its gradient norm with torch's foreach kernel, M members per member, which rounds differently)."""
    data = sets(5, 9)
    both = Trainer(member_config(2, (0.5, 1.5), grad_clip=0.3), data, runtime=QUIET)
    alone = Trainer(member_config(1, (1.5,), grad_clip=0.3), [data[1]], runtime=QUIET)
    with torch.no_grad():
        for p_alone, p_ema, p_both in zip(alone.net.parameters(), alone.ema.module.parameters(),
                                          both.net.parameters()):
            p_alone.copy_(p_both[1:2])
            p_ema.copy_(p_both[1:2])
    alone.batch_for_step = lambda step: tuple(t[1:2] for t in both.batch_for_step(step))
    for step in range(12):
        loss_both, norm_both = both.train_step(step)
        loss_alone, norm_alone = alone.train_step(step)
        assert torch.equal(loss_both[1:], loss_alone)
        torch.testing.assert_close(norm_both[1:], norm_alone, rtol=1e-6, atol=0)
    for a, b in zip(alone.net.parameters(), both.net.parameters()):
        torch.testing.assert_close(a, b[1:2], rtol=1e-6, atol=1e-7)
    for a, b in zip(alone.ema.module.parameters(), both.ema.module.parameters()):
        torch.testing.assert_close(a, b[1:2], rtol=1e-6, atol=1e-7)
    for a, b in zip(alone.optimizer.exp_avg_sq, both.optimizer.exp_avg_sq):
        torch.testing.assert_close(a, b[1:2], rtol=1e-6, atol=1e-12)


def test_members_do_not_see_each_others_data():
    """Changing member 0's training set leaves member 1's whole trajectory unchanged."""
    a = Trainer(member_config(2, (0.5, 1.0)), sets(5, 9), runtime=QUIET)
    b = Trainer(member_config(2, (0.5, 1.0)), [torch.randn(5, 6) * 9, sets(5, 9)[1]], runtime=QUIET)
    a.fit(10)
    b.fit(10)
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(pa[1], pb[1]) and not torch.equal(pa[0], pb[0])
    assert [r[2] for r in a.history] == [r[2] for r in b.history]


def test_gradient_clipping_is_per_member():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, 5, generator=g), torch.randn(3, 1, 5, generator=g)]
    grads[0][0] *= 100.0  # member 0 far above the threshold, member 2 below it
    grads[1][2] *= 1e-3
    grads[0][2] *= 1e-3
    norms = member_grad_norms(grads, 3)
    for m in range(3):
        alone = torch.cat([x[m].reshape(-1) for x in grads]).norm()
        torch.testing.assert_close(norms[m], alone)
    expected = []
    for m in range(3):  # torch's clipping of each member alone
        params = [torch.nn.Parameter(torch.zeros_like(x[m])) for x in grads]
        for p, x in zip(params, grads):
            p.grad = x[m].clone()
        torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        expected.append([p.grad for p in params])
    clip_member_grads_(grads, norms, 1.0)
    for m in range(3):
        for got, want in zip(grads, expected[m]):
            torch.testing.assert_close(got[m], want)
    assert member_grad_norms(grads, 3)[2] < 1.0 and abs(float(member_grad_norms(grads, 3)[0]) - 1.0) < 1e-5


def test_per_member_sigma_data_in_denoiser_and_loss():
    torch.manual_seed(0)
    sd = [0.2, 0.7, 3.0]
    den = PreconditionedDenoiser(MLP(4, members=3, width=8, depth=1), EDMPrecond(), sigma_data=sd)
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    sigma = torch.rand(3, 5, dtype=torch.float64) + 0.1
    full = den.denoise(x, sigma)
    for m in range(3):
        one = PreconditionedDenoiser(den.net.member(m), EDMPrecond(sigma_data=sd[m]))
        torch.testing.assert_close(one(x[m], sigma[m]), full[m])
    loss = EDMLoss(sigma_data=per_member(torch.tensor(sd), sigma))
    for m in range(3):
        torch.testing.assert_close(loss.weight(sigma)[m], EDMLoss(sigma_data=sd[m]).weight(sigma[m]))
    with pytest.raises(InputError, match="sigma_data"):
        PreconditionedDenoiser(MLP(4, members=3), EDMPrecond(), sigma_data=[1.0, 2.0])


def test_one_mlp_plain_and_batched():
    torch.manual_seed(0)
    plain = MLP(12, width=16, depth=3)
    x = torch.randn(5, 3, 2, 2)
    assert plain(x, torch.zeros(5)).shape == x.shape  # any sample shape, flattened inside
    batched = MLP(12, members=2, width=16, depth=3)
    xs = torch.randn(2, 5, 12)
    out = batched(xs, torch.zeros(2, 5))
    one = batched.member(1)
    torch.testing.assert_close(one(xs[1], torch.zeros(5)), out[1])
    assert one.w_in.data_ptr() == batched.w_in[1].data_ptr()  # a view, not a copy
    assert sum(p.numel() for p in MLP(48).parameters()) == 173_104
    with pytest.raises(InputError, match="members"):
        batched(torch.randn(3, 5, 12), torch.zeros(3, 5))


def test_trainer_refuses_mismatched_members_and_bad_data():
    with pytest.raises(InputError, match="members"):
        Trainer(member_config(2, (0.5,)), sets(5), runtime=QUIET)
    with pytest.raises(InputError, match="sigma_data"):
        Trainer(member_config(2, (0.5, 0.5, 0.5)), sets(5, 5), runtime=QUIET)
    bad = sets(5, 9)
    bad[1][3, 2] = float("nan")
    with pytest.raises(InputError, match=r"data\[1\]: item 3"):
        Trainer(member_config(2, (0.5, 1.0)), bad, runtime=QUIET)


@pytest.mark.parametrize("fused", [False, True])
def test_adam_matches_torch_optim(fused):
    """The one optimizer is torch.optim.Adam's update (float64, several steps with changing learning rates)."""
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    ref_params = [p.clone().requires_grad_() for p in start]
    ours = [p.clone() for p in start]
    ref = torch.optim.Adam(ref_params, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, foreach=True)
    opt = Adam(ours, betas=(0.8, 0.99), eps=1e-6, fused=fused)
    for k in range(6):
        grads = [torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in start]
        for p, q, gr in zip(ref_params, ours, grads):
            p.grad, q.grad = gr.clone(), gr.clone()
        for group in ref.param_groups:
            group["lr"] = 1e-2 * (k + 1)
        ref.step()
        opt.step(1e-2 * (k + 1))
    for p, q in zip(ref_params, ours):
        torch.testing.assert_close(q, p.detach(), rtol=1e-14, atol=1e-15)
    restored = Adam([p.clone() for p in ours], fused=fused)
    restored.load_state_dict(opt.state_dict())
    assert restored.steps == 6 and all(torch.equal(a, b) for a, b in zip(restored.exp_avg, opt.exp_avg))


@pytest.mark.parametrize("num_items", [1, 3, 7, 70_000])
def test_data_order_blocks_are_permutations_and_the_stream_is_consistent(num_items):
    order = DataOrder(num_items, seed=5)
    epochs = min(order.epochs_per_block * 2 + 1, 6)
    for e in range(epochs):
        assert sorted(order.permutation(e).tolist()) == list(range(num_items))
    flat = np.concatenate([order.permutation(e) for e in range(epochs)])
    for start, count in ((0, len(flat)), (1, len(flat) - 2), (num_items, 3)):
        assert np.array_equal(DataOrder(num_items, 5).stream(start, min(count, len(flat) - start)),
                              flat[start:start + min(count, len(flat) - start)])


def test_identity_preconditioning_is_the_net_and_its_loss_weight_is_one():
    class Shrink(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return self.scale * x / (1 + sigma.reshape(-1, 1) ** 2)

    den = PreconditionedDenoiser(Shrink(), IdentityPrecond())
    x = torch.randn(4, 3, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(den(x, sigma), 0.5 * x / (1 + sigma.reshape(-1, 1) ** 2))
    loss = make_loss("identity", p_mean=-1.0, p_std=0.5)
    assert isinstance(loss, IdentityLoss) and torch.equal(loss.weight(sigma), torch.ones_like(sigma))
    s = loss.sample_sigma(100_000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert abs(s.log().mean().item() + 1.0) < 0.01 and abs(s.log().std().item() - 0.5) < 0.01
