"""The five GAN objectives: one step each, the penalties against direct computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medgan.models import build_discriminator, build_generator
from medgan.training.losses import LOSSES, DRAGANLoss, build_loss, gradient_penalty

SMALL = {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 16}


class Linear(nn.Module):
    """D(x) = <w, x> + b per image: gradient w everywhere, so every penalty is known exactly."""

    def __init__(self, shape, scale=1.0):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(1))
                              * scale)
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1) + self.b


class Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return self.b + 0.0 * x.flatten(1).sum(1)


def test_registry_names():
    assert sorted(LOSSES) == ["dragan", "gan", "lsgan", "stylegan2", "wgan", "wgan_gp"]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_one_step_of_every_loss_is_finite(name):
    torch.manual_seed(0)
    G = build_generator(SMALL, channels=1, resolution=16)
    D = build_discriminator(SMALL, channels=1, resolution=16)
    loss = build_loss({"name": name})
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
    real = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        fake = G(torch.randn(4, 8))
    d_loss, stats = loss.d_loss(D, real, fake)
    opt_d.zero_grad()
    d_loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)
    opt_d.step()
    loss.after_d_step(D)
    g_loss, _ = loss.g_loss(D, G(torch.randn(4, 8)))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert all(torch.isfinite(v) for v in stats.values())
    assert all(torch.isfinite(p).all() for p in [*G.parameters(), *D.parameters()])


def test_wgan_gp_penalty_matches_autograd():
    torch.manual_seed(0)
    D = build_discriminator(SMALL, channels=2, resolution=16)
    real, fake = torch.randn(4, 2, 16, 16), torch.randn(4, 2, 16, 16)
    loss = build_loss({"name": "wgan_gp", "drift": 0.0})
    torch.manual_seed(7)
    value, stats = loss.d_loss(D, real, fake)
    # the same draws, directly: the critic terms run first, then alpha
    torch.manual_seed(7)
    D_real, D_fake = D(real).mean(), D(fake).mean()
    alpha = torch.rand(4, 1, 1, 1)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    penalty = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    expected = D_fake - D_real + 10.0 * penalty
    assert abs(stats["gradient_penalty"].item() - penalty.item()) < 1e-6
    assert abs(value.item() - expected.item()) < 1e-6


def test_gradient_penalty_of_a_linear_critic():
    D = Linear((1, 4, 4), scale=0.1)
    penalty, norm = gradient_penalty(D, torch.randn(3, 1, 4, 4))
    w_norm = D.w.detach().norm()
    assert abs(norm.item() - w_norm.item()) < 1e-6
    assert abs(penalty.item() - (w_norm.item() - 1) ** 2) < 1e-6
    penalty.backward()  # differentiable with respect to D's parameters
    torch.testing.assert_close(D.w.grad, 2 * (w_norm - 1) * D.w.detach() / w_norm)


def test_drift_term():
    D = Linear((1, 4, 4))
    real, fake = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    with_drift = build_loss({"name": "wgan_gp", "drift": 0.5, "gp_lambda": 0.0})
    no_drift = build_loss({"name": "wgan_gp", "drift": 0.0, "gp_lambda": 0.0})
    a, stats = with_drift.d_loss(D, real, fake)
    b, _ = no_drift.d_loss(D, real, fake)
    expected = (D(real) ** 2).mean()
    assert abs(stats["drift"].item() - expected.item()) < 1e-5
    assert abs((a - b).item() - 0.5 * expected.item()) < 1e-5
    assert build_loss({"name": "wgan_gp"}).config == {
        "name": "wgan_gp", "n_critic": 5, "gp_lambda": 10.0, "drift": 0.001}


def test_dragan_penalty():
    torch.manual_seed(0)
    D = build_discriminator(SMALL, channels=1, resolution=16)
    real, fake = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)
    loss = build_loss({"name": "dragan"})
    assert (loss.gp_lambda, loss.perturb_scale, loss.n_critic) == (10.0, 0.5, 1)
    value, stats = loss.d_loss(D, real, fake)
    assert torch.isfinite(value) and stats["gradient_penalty"] > 0
    gan, _ = build_loss({"name": "gan"}).d_loss(D, real, fake)
    assert abs((value - gan - 10.0 * stats["gradient_penalty"]).item()) < 1e-5
    # perturbed points lie within perturb_scale * std above the reals
    x = loss.perturbed(real)
    assert ((x - real) >= 0).all() and ((x - real) <= 0.5 * real.std() + 1e-6).all()


def test_dragan_zero_gradient_critic():
    # D constant in x: ||grad|| = 0, penalty = lambda * (0 - 1)^2, and no NaN from the norm at 0
    D = Constant()
    loss = DRAGANLoss(gp_lambda=10.0)
    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    value, stats = loss.d_loss(D, real, fake)
    assert stats["gradient_penalty"].item() == pytest.approx(1.0)
    assert stats["grad_norm"].item() == 0.0
    value.backward()
    assert torch.isfinite(D.b.grad)
    expected = F.softplus(-torch.tensor(0.5)) + F.softplus(torch.tensor(0.5)) + 10.0
    assert value.item() == pytest.approx(expected.item(), abs=1e-6)


def test_label_smoothing_formula():
    D = Linear((1, 4, 4))
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    plain, _ = build_loss({"name": "gan"}).d_loss(D, real, fake)
    smooth_loss = build_loss({"name": "gan", "label_smoothing": 0.1})
    smooth, _ = smooth_loss.d_loss(D, real, fake)
    lr, lf = D(real), D(fake)
    expected = (F.binary_cross_entropy_with_logits(lr, torch.full_like(lr, 0.9))
                + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf)))
    assert abs(smooth.item() - expected.item()) < 1e-6
    # the difference is s * mean(l_real): BCE(l, 1 - s) - BCE(l, 1) = s * l
    assert abs((smooth - plain).item() - 0.1 * lr.mean().item()) < 1e-5
    # the generator's target stays 1
    g_smooth, _ = smooth_loss.g_loss(D, fake)
    g_plain, _ = build_loss({"name": "gan"}).g_loss(D, fake)
    assert torch.equal(g_smooth, g_plain)
    assert smooth_loss.config == {"name": "gan", "n_critic": 1, "label_smoothing": 0.1}


def test_generator_label_smoothing_of_delplace():
    """Delplace sec. 2.3: "training both networks with D(y) = 0.9": G's target 0.9 too."""
    D = Linear((1, 4, 4))
    fake = torch.randn(6, 1, 4, 4)
    lf = D(fake)
    for name in ("gan", "dragan"):
        loss = build_loss({"name": name, "label_smoothing": 0.1, "smooth_generator": True})
        g, _ = loss.g_loss(D, fake)
        expected = F.binary_cross_entropy_with_logits(lf, torch.full_like(lf, 0.9))
        assert abs(g.item() - expected.item()) < 1e-6
    with pytest.raises(ValueError, match="smooth_generator"):
        build_loss({"name": "gan", "smooth_generator": "yes"})
    with pytest.raises(ValueError, match="unknown"):
        build_loss({"name": "lsgan", "smooth_generator": True})


def test_dragan_perturbation_of_delplace_eq5():
    """Eq. 5: x_m' = a x + (1 - a) x_p, x_p ~ U(0, 0.5 sigma_x) (noise alone); a per image
    (`delplace`) or per pixel (`delplace_code`, his dcgan3.py); Kodali's x + a (x_p - x)."""
    torch.manual_seed(0)
    real = 3.0 + torch.randn(64, 1, 8, 8)  # far from 0: noise alone is far from x
    bound = 0.5 * real.std().item() + 1e-6
    for name in ("delplace", "delplace_code"):
        loss = build_loss({"name": "dragan", "perturbation": name})
        torch.manual_seed(1)
        x = loss.perturbed(real)
        torch.manual_seed(1)
        noise = 0.5 * real.std() * torch.rand_like(real)
        alpha = torch.rand_like(real) if name == "delplace_code" else torch.rand(64, 1, 1, 1)
        torch.testing.assert_close(x, alpha * real + (1 - alpha) * noise)
        assert (noise >= 0).all() and (noise <= bound).all()
    kodali = build_loss({"name": "dragan"}).perturbed(real)
    assert ((kodali - real) >= 0).all() and ((kodali - real) <= bound).all()
    with pytest.raises(ValueError, match="perturbation"):
        build_loss({"name": "dragan", "perturbation": "gulrajani"})


def test_lsgan_formula():
    D = Linear((1, 4, 4))
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    loss = build_loss({"name": "lsgan"})
    d, _ = loss.d_loss(D, real, fake)
    g, _ = loss.g_loss(D, fake)
    expected_d = 0.5 * ((D(real) - 1) ** 2).mean() + 0.5 * (D(fake) ** 2).mean()
    assert abs(d.item() - expected_d.item()) < 1e-6
    assert abs(g.item() - 0.5 * ((D(fake) - 1) ** 2).mean().item()) < 1e-6


@pytest.mark.parametrize(("cfg", "match"), [
    ({"name": "wgan_gp", "clip": 0.01}, "clip"),
    ({"name": "lsgan", "label_smoothing": 0.1}, "label_smoothing"),
    ({"name": "dragan", "lambda": 10}, "lambda"),
    ({"name": "gan", "label_smoothing": 1.0}, "label_smoothing"),
    ({"name": "wgan_gp", "gp_lambda": -1}, "gp_lambda"),
    ({"name": "dragan", "perturb_scale": "big"}, "perturb_scale"),
    ({"name": "gan", "g_steps": 0}, "g_steps"),
    ({"name": "hinge"}, "hinge"),
])
def test_bad_loss_configs(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_loss(cfg)


def test_g_steps_and_numeric_strings():
    loss = build_loss({"name": "gan", "g_steps": 3})
    assert (loss.n_critic, loss.g_steps) == (1, 3)
    assert build_loss({"name": "wgan_gp", "drift": "1e-3"}).drift == 0.001
    assert build_loss({"name": "wgan"}).g_steps == 1
