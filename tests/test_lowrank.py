"""Paper 2's low-rank denoiser (mogsim.nets.lowrank).

* With the true bases it is the MoLRG posterior mean (float64, 1e-12), its score is the autograd gradient of the
  mixture's log-density (computed independently with torch.distributions), and its (s, gamma) form is the paper's
  formula written out.
* The hard gate is the argmax; the soft gate tends to it as sigma -> 0.
* Bases stay orthonormal whatever the free parameter is; the parametrisation, retraction and member axis behave.
* On the training engine (registry name ``lowrank``, identity preconditioning, log-uniform sigma, cosine decay): the
  bases stay orthonormal, the ``after_optimizer_step`` hook is what bounds the parameter's norm, a checkpoint loads
  back as a denoiser, and per-member seeds make a member's start independent of the member count.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mogsim import MoLRG
from mogsim.errors import InputError
from mogsim.nets.lowrank import LowRankDenoiser, orthonormal_columns

FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIGMAS = (0.002, 0.05, 0.3, 1.0, 5.0, 80.0)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws its unseeded tensors from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


def _true_net(mol: MoLRG, **kwargs) -> LowRankDenoiser:
    net = LowRankDenoiser(mol.ambient_dim, mol.num_components, mol.rank, dtype=torch.float64, **kwargs)
    net.set_bases(mol.bases)
    return net


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@FEW
@given(st.integers(1, 3), st.integers(1, 5), st.sampled_from((16, 48)), st.integers(0, 10**6))
def test_true_bases_give_the_molrg_posterior_mean(k, d, n, seed):
    mol = MoLRG.random(n, k, d, seed=seed)
    net = _true_net(mol)
    x0, _ = mol.sample(32, seed=seed + 1)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sigma in SIGMAS:
            x = x0 + sigma * torch.randn(32, n, generator=gen, dtype=torch.float64)
            assert _rel(net(x, sigma), mol(x, sigma)) < 1e-12, sigma
        per_sample = torch.tensor(SIGMAS, dtype=torch.float64).repeat(6)[:32]
        x = x0 + per_sample[:, None] * torch.randn(32, n, generator=gen, dtype=torch.float64)
        assert _rel(net(x, per_sample), mol(x, per_sample)) < 1e-12


def test_score_is_the_gradient_of_the_mixture_log_density():
    mol = MoLRG.random(8, 2, 2, seed=3)
    net = _true_net(mol)
    x0, _ = mol.sample(5, seed=4)
    for sigma in (0.3, 1.0, 3.0):
        x = (x0 + sigma * torch.randn(5, 8, dtype=torch.float64)).requires_grad_(True)
        comps = [torch.distributions.MultivariateNormal(torch.zeros(8, dtype=torch.float64),
                                                        u @ u.T + sigma**2 * torch.eye(8, dtype=torch.float64))
                 for u in mol.bases]
        log_p = torch.logsumexp(torch.stack([c.log_prob(x) for c in comps]), dim=0) - math.log(2)
        (grad,) = torch.autograd.grad(log_p.sum(), x)
        with torch.no_grad():
            score = (net(x, sigma) - x) / sigma**2
        assert _rel(score, grad) < 1e-10


def test_paper_form_is_the_paper_formula():
    mol = MoLRG.random(12, 3, 2, seed=5)
    net = _true_net(mol)
    x_t = torch.randn(7, 12, dtype=torch.float64)
    u = mol.bases
    for s, gamma in ((1.0, 0.5), (0.6, 0.8), (0.05, 2.0)):
        energy = torch.einsum("bn,knd->bkd", x_t, u).pow(2).sum(-1)
        phi = s**2 / (2 * gamma**2 * (s**2 + gamma**2))
        w = torch.softmax(phi * energy, dim=1)
        want = s / (s**2 + gamma**2) * torch.einsum("bk,knd,bkd->bn", w, u, torch.einsum("bn,knd->bkd", x_t, u))
        with torch.no_grad():
            assert _rel(net.paper_form(x_t, s, gamma), want) < 1e-13
            s_vec = torch.full((7,), s, dtype=torch.float64)
            assert _rel(net.paper_form(x_t, s_vec, gamma), want) < 1e-13


def test_hard_gate_is_the_argmax_and_the_small_sigma_limit_of_the_soft_gate():
    mol = MoLRG.random(16, 3, 2, seed=6)
    hard, soft = _true_net(mol, gate="hard"), _true_net(mol)
    x0, _ = mol.sample(20, seed=7)  # points near one subspace each: no near-ties between components
    x = x0 + 0.1 * torch.randn(20, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        w = hard.weights(x, 1.0)
        energy = torch.einsum("bn,knd->bkd", x, mol.bases).pow(2).sum(-1)
        assert torch.equal(w, torch.nn.functional.one_hot(energy.argmax(1), 3).to(w.dtype))
        for sigma in (1e-2, 1e-3):  # soft -> hard as sigma -> 0 (here the points are not near a tie)
            assert _rel(soft.weights(x, sigma), w) < 1e-6
        assert _rel(soft.weights(x, 1e-3), hard.weights(x, 1e-3)) < _rel(soft.weights(x, 1e-1), hard.weights(x, 1e-1))


def test_bases_are_orthonormal_whatever_the_parameter():
    net = LowRankDenoiser(10, 3, 3, members=4, seed=1, dtype=torch.float64)
    with torch.no_grad():
        net.raw.mul_(torch.linspace(0.1, 5, 3, dtype=torch.float64)).add_(0.3)  # far from orthonormal
    u = net.bases()
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(u.transpose(-1, -2) @ u, eye.expand(4, 3, 3, 3), atol=1e-12)
    x = torch.randn(4, 5, 10, dtype=torch.float64)
    before = net(x, 0.7)
    net.retract_()  # same function, orthonormal parameter
    assert torch.allclose(net(x, 0.7), before, atol=1e-13)
    assert torch.allclose(net.raw.transpose(-1, -2) @ net.raw, eye.expand(4, 3, 3, 3), atol=1e-12)


def test_mutually_orthogonal_bases():
    net = LowRankDenoiser(12, 3, 4, members=2, mutually_orthogonal=True, seed=2, dtype=torch.float64)
    with torch.no_grad():
        net.raw.add_(0.5)
    u = net.bases()  # (M, K, n, d)
    stacked = u.permute(0, 2, 1, 3).reshape(2, 12, 12)
    assert torch.allclose(stacked.transpose(-1, -2) @ stacked, torch.eye(12, dtype=torch.float64).expand(2, 12, 12),
                          atol=1e-12)
    mol = MoLRG.random(12, 3, 4, seed=0)
    net.set_bases(mol.bases)
    assert torch.allclose(net.bases()[1], mol.bases, atol=1e-14)
    with pytest.raises(InputError, match="orthogonal to each other"):
        net.set_bases(torch.stack([mol.bases[0]] * 3))
    with pytest.raises(InputError, match="K d <= n"):
        LowRankDenoiser(12, 4, 4, mutually_orthogonal=True)


def test_member_axis_members_are_independent_and_match_their_view():
    net = LowRankDenoiser(8, 2, 2, members=3, seed=4)
    x = torch.randn(3, 6, 8)
    sigma = torch.rand(3, 6) + 0.1
    full = net(x, sigma)
    for m in range(3):
        torch.testing.assert_close(net.member(m)(x[m], sigma[m]), full[m].detach(), rtol=1e-6, atol=1e-7)
    net.denoise(x, sigma)[0].pow(2).sum().backward()
    assert net.raw.grad[0].abs().sum() > 0 and torch.all(net.raw.grad[1:] == 0)
    one = net.member(1)
    assert isinstance(one, LowRankDenoiser) and one.bases().shape == (1, 2, 8, 2)
    assert torch.equal(one.bases()[0], net.bases()[1].detach()) and not one.raw.requires_grad
    assert one.raw.data_ptr() == net.raw[1].data_ptr()  # a view: it follows the trained weights


def test_dtypes_and_a_gradient_step():
    net = LowRankDenoiser(6, 2, 2, seed=0)  # float32 parameters
    x64 = torch.randn(4, 6, dtype=torch.float64)
    assert net(x64, 0.5).dtype == torch.float64 and net(x64.float(), 0.5).dtype == torch.float32
    x0 = torch.randn(4, 6)
    loss = (net(x0 + 0.1 * torch.randn(4, 6), 0.1) - x0).pow(2).sum()
    loss.backward()
    assert torch.isfinite(net.raw.grad).all() and net.raw.grad.abs().sum() > 0


def test_config_round_trip_and_bad_inputs():
    net = LowRankDenoiser(8, 2, 3, members=2, gate="hard", seed=5)
    again = LowRankDenoiser(**net.config())
    assert torch.equal(again.raw, net.raw) and again.raw.dtype == torch.float32
    with pytest.raises(InputError, match="rank"):
        LowRankDenoiser(4, 1, 5)
    with pytest.raises(InputError, match="gate"):
        LowRankDenoiser(4, 1, 2, gate="max")
    with pytest.raises(InputError, match="members"):
        net(torch.randn(5, 8), 1.0)  # (B, n) with M = 2
    with pytest.raises(InputError, match="sigma"):
        net(torch.randn(2, 5, 8), -1.0)
    with pytest.raises(InputError, match="sigma has shape"):
        net(torch.randn(2, 5, 8), torch.ones(5))
    with pytest.raises(InputError, match="member"):
        net.member(2)
    with pytest.raises(InputError, match="orthonormal"):
        net.set_bases(torch.ones(2, 8, 3))
    assert torch.allclose(orthonormal_columns(torch.eye(4)[:, :2] * 3), torch.eye(4)[:, :2])


def test_per_member_seeds_give_each_member_its_own_start():
    batched = LowRankDenoiser(10, 2, 3, members=3, seed=[7, 8, 9])
    for m, seed in enumerate((7, 8, 9)):
        assert torch.equal(batched.member(m).raw, LowRankDenoiser(10, 2, 3, seed=seed).raw)
    assert batched.config()["seed"] == [7, 8, 9]
    assert torch.equal(LowRankDenoiser(**batched.config()).raw, batched.raw)
    with pytest.raises(InputError, match="one per member"):
        LowRankDenoiser(10, 2, 3, members=3, seed=[1, 2])
    with pytest.raises(InputError, match="seed"):
        LowRankDenoiser(10, 2, 3, seed=-1)


# -- on the training engine ----------------------------------------------------------------------------------------
def _trainer(data: list[torch.Tensor], *, k: int = 2, d: int = 2, steps: int = 200, lr: float = 0.03,
             batch: int = 32):
    from mogsim.nets import network_config
    from mogsim.training import RuntimeOptions, TrainConfig, Trainer

    n = data[0].shape[1]
    net = network_config("lowrank", (n,), components=k, rank=d, members=len(data), seed=list(range(len(data))))
    cfg = TrainConfig(net=net, precond="identity", batch=batch, lr=lr, lr_warmup_images=0.0,
                      lr_decay_images=float(steps * batch), sigma_range=(0.002, 0.1), ema_halflife_images=batch,
                      ema_rampup_ratio=None, seed=3)
    return Trainer(cfg, data, runtime=RuntimeOptions(log_every=50, checkpoint_every=0))


def _norms(net: LowRankDenoiser) -> torch.Tensor:
    return net.raw.detach().flatten(1).norm(dim=1)  # sqrt(K d) when the columns are orthonormal


def test_training_keeps_the_bases_orthonormal_and_the_hook_bounds_the_parameter(monkeypatch):
    mol = MoLRG.random(16, 2, 2, seed=0)
    data = [mol.sample(12, seed=s)[0].float() for s in range(3)]
    trained = _trainer(data)
    trained.fit(200)
    u = trained.net.bases().detach().double()
    torch.testing.assert_close(u.transpose(-1, -2) @ u, torch.eye(2, dtype=torch.float64).expand(3, 2, 2, 2),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(_norms(trained.net), torch.full((3,), 2.0), rtol=0, atol=1e-5)  # ||A||_F = sqrt(K d)
    monkeypatch.setattr(LowRankDenoiser, "after_optimizer_step", None)  # the engine finds no hook
    drifting = _trainer(data)
    drifting.fit(200)
    assert bool((_norms(drifting.net) > 2.5).all()), _norms(drifting.net)  # Adam inflates the free parameter
    u = drifting.net.bases().detach().double()  # the QR map still gives orthonormal bases
    torch.testing.assert_close(u.transpose(-1, -2) @ u, torch.eye(2, dtype=torch.float64).expand(3, 2, 2, 2),
                               rtol=0, atol=1e-5)


def test_trained_checkpoint_loads_as_a_denoiser(tmp_path):
    from mogsim.training import load_trained_denoiser

    mol = MoLRG.random(16, 2, 2, seed=1)
    trainer = _trainer([mol.sample(8, seed=2)[0].float()] * 2, steps=20)
    trainer.fit(20)
    trainer.save(tmp_path)
    den = load_trained_denoiser(tmp_path, ema=False)
    x = torch.randn(5, 16)
    for m in range(2):
        torch.testing.assert_close(den.member(m)(x, 0.3), trainer.net.member(m)(x, 0.3))


def test_log_uniform_noise_levels_and_cosine_learning_rate():
    import math

    from mogsim.training import IdentityLoss, TrainConfig, make_loss
    from mogsim.training.losses import loss_record

    loss = make_loss("identity", sigma_range=(0.002, 0.1))
    sigma = loss.sample_sigma((20000,), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert float(sigma.min()) >= 0.002 * (1 - 1e-6) and float(sigma.max()) <= 0.1 * (1 + 1e-6)
    middle = math.sqrt(0.002 * 0.1)  # the median of a log-uniform law is the geometric mean of its ends
    assert abs(float((sigma < middle).double().mean()) - 0.5) < 0.02
    assert loss_record(loss)["sigma_range"] == (0.002, 0.1)
    default = IdentityLoss().sample_sigma((20000,), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert abs(float(default.log().mean()) + 1.2) < 0.05  # EDM's log-normal stays the default
    for bad in ((0.1, 0.002), (0.0, 1.0), (0.1,)):
        with pytest.raises(InputError, match="sigma_range"):
            IdentityLoss(sigma_range=bad)
    with pytest.raises(InputError, match="only the identity loss"):
        make_loss("edm", sigma_range=(0.002, 0.1))
    net = {"name": "lowrank", "family": "lowrank", "sample_shape": [8], "kwargs": {"dim": 8}}
    cfg = TrainConfig(net=net, precond="identity", batch=10, lr=1.0, lr_warmup_images=0.0, lr_decay_images=1000.0)
    assert [round(cfg.lr_at(s), 12) for s in (0, 50, 100, 200)] == [1.0, 0.5, 0.0, 0.0]
    warm = TrainConfig(net=net, batch=10, lr=1.0, lr_warmup_images=100.0)  # no decay: warm-up, then constant
    assert [warm.lr_at(s) for s in (0, 4, 9, 500)] == [0.1, 0.5, 1.0, 1.0]
    assert TrainConfig(net=net, sigma_range=[0.002, 0.1]).to_dict()["sigma_range"] == [0.002, 0.1]
