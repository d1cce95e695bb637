"""StyleGAN2 (medgan.models.stylegan2) and its loss: shapes for 1-7 channels, demodulation and
lazy R1 against direct computations, FIR resampling, style mixing, the ``auto`` presets."""

import math

import pytest
import torch
import torch.nn.functional as F

from medgan.models import build_discriminator, build_generator
from medgan.models.conditional import ConditionalGenerator
from medgan.models.stylegan2 import ModulatedConv2d, downsample2x, fir_filter, upsample2x
from medgan.training.losses import build_loss
from medgan.training.presets import resolve_auto, stylegan2_auto

ARCH = {"name": "stylegan2", "latent_dim": 8, "w_dim": 8, "mapping_layers": 2,
        "channel_base": 128, "channel_max": 8}


@pytest.mark.parametrize("channels", [1, 3, 4, 7])
@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_stylegan2_shapes_and_channels(channels, resolution):
    torch.manual_seed(0)
    G = build_generator(ARCH, channels=channels, resolution=resolution)
    D = build_discriminator(ARCH, channels=channels, resolution=resolution)
    x = G(torch.randn(4, 8))
    assert x.shape == (4, channels, resolution, resolution)
    assert D(x).shape == (4,)
    # one modulated conv per layer, two per block above 4 px, one toRGB per block
    assert G.num_ws == 3 * int(math.log2(resolution // 4)) + 2


def test_stylegan2_conditional_keeps_the_class_in_mixing_latents():
    condition = {"classes": ["a", "b", "c"], "embed_dim": 4}
    G = build_generator(ARCH, channels=2, resolution=16, condition=condition)
    D = build_discriminator(ARCH, channels=2, resolution=16, condition=condition)
    assert isinstance(G, ConditionalGenerator) and G.base.mixing_keep == 4
    labels = torch.tensor([0, 1, 2, 0])
    x = G(torch.randn(4, 8), labels)
    assert x.shape == (4, 2, 16, 16) and D(x, labels).shape == (4,)


def test_demodulation_matches_a_direct_per_sample_convolution():
    torch.manual_seed(1)
    conv = ModulatedConv2d(5, 6, 3, w_dim=7)
    x, w = torch.randn(3, 5, 8, 8), torch.randn(3, 7)
    out = conv(x, w)
    for i in range(3):
        style = conv.affine(w[i : i + 1])[0]  # s = A(w)
        weight = conv.weight * conv.scale * style[None, :, None, None]  # eq. 1
        sigma = torch.sqrt(weight.square().sum(dim=(1, 2, 3)) + 1e-8)  # eq. 2
        direct = F.conv2d(x[i : i + 1], weight / sigma[:, None, None, None], padding=1)  # eq. 3
        torch.testing.assert_close(out[i : i + 1], direct, rtol=1e-5, atol=1e-5)
    # demodulated weights have unit norm per output channel: unit-variance inputs stay so
    norms = conv.modulated_weight(w).square().sum(dim=(2, 3, 4))
    torch.testing.assert_close(norms, torch.ones(3, 6), rtol=1e-5, atol=1e-6)


def test_fir_resampling_keeps_constants_and_sizes():
    f = fir_filter()
    assert f.shape == (4, 4) and float(f.sum()) == pytest.approx(1.0)
    x = torch.full((2, 3, 8, 8), 2.5)
    up, down = upsample2x(x, f), downsample2x(x, f)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full((2, 3, 12, 12), 2.5))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full((2, 3, 2, 2), 2.5))
    # the separable upsampling is the depthwise transposed convolution with the 4x4 filter
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(upsample2x(x), upsample2x(x, f), rtol=1e-5, atol=1e-6)


def test_style_mixing_only_in_training_and_noise_fixed_in_eval():
    torch.manual_seed(2)
    G = build_generator({**ARCH, "mixing_prob": 1.0}, channels=1, resolution=16)
    z = torch.randn(6, 8)
    ws = G.mapped(z)
    assert not torch.equal(ws[:, 0], ws[:, -1])  # every image mixed from some layer on
    assert torch.equal(ws[:, 0], G.mapping(z))  # the first layer keeps its own w
    G.eval()
    ws = G.mapped(z)
    assert torch.equal(ws[:, 0], ws[:, -1])
    assert torch.equal(G(z), G(z))  # const noise: a function of z


def _r1_direct(D, real, fake, gamma):
    real = real.detach().requires_grad_(True)
    logits = D(real)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    penalty = grad.square().sum(dim=(1, 2, 3)).mean()
    loss = F.softplus(-logits).mean() + F.softplus(D(fake)).mean()
    return loss, penalty


def test_lazy_r1_matches_a_direct_autograd_computation():
    torch.manual_seed(3)
    D = build_discriminator(ARCH, channels=2, resolution=16)
    real, fake = torch.randn(4, 2, 16, 16), torch.randn(4, 2, 16, 16)
    gamma, interval = 0.7, 3
    loss = build_loss({"name": "stylegan2", "r1_gamma": gamma, "r1_interval": interval})
    bce, penalty = _r1_direct(D, real, fake, gamma)
    for step in range(1, 2 * interval + 1):
        value, stats = loss.d_loss(D, real, fake)
        expected = bce + (0.5 * gamma * interval * penalty if step % interval == 0 else 0.0)
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["r1"], penalty.detach(), rtol=1e-5, atol=1e-7)
    # the penalty's parameter gradient is that of the direct computation
    value, _ = build_loss({"name": "stylegan2", "r1_gamma": gamma, "r1_interval": 1}).d_loss(
        D, real, fake)
    g1 = torch.autograd.grad(value, list(D.parameters()))
    g2 = torch.autograd.grad(bce + 0.5 * gamma * penalty, list(D.parameters()))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_stylegan2_loss_config_errors():
    with pytest.raises(ValueError, match="r1_interval"):
        build_loss({"name": "stylegan2", "r1_interval": 0})
    with pytest.raises(ValueError, match="ada"):
        build_loss({"name": "stylegan2", "ada": {"bogus": 1}})
    with pytest.raises(ValueError, match="target"):
        build_loss({"name": "stylegan2", "ada": {"target": 2.0}})
    assert build_loss({"name": "stylegan2", "ada": True}).config["ada"]["target"] == 0.6


def test_auto_presets_follow_the_ada_paper():
    values = stylegan2_auto(256, 64)
    assert values["r1_gamma"] == pytest.approx(0.0002 * 256 * 256 / 64)  # 0.2048
    # EMA half-life of batch * 10 / 32 thousand images
    assert values["ema_decay"] ** (64 * 10 / 32 * 1000 / 64) == pytest.approx(0.5)
    assert values["mbstd_group_size"] == 4 and stylegan2_auto(16, 2)["mbstd_group_size"] == 2
    arch, loss, schedule = resolve_auto(
        {**ARCH, "mbstd_group_size": "auto"}, {"name": "stylegan2", "r1_gamma": "auto"},
        {"batch_size": 32, "ema_decay": "auto"}, resolution=16)
    assert loss["r1_gamma"] == pytest.approx(0.0016) and arch["mbstd_group_size"] == 4
    assert 0.99 < schedule["ema_decay"] < 1.0
    with pytest.raises(ValueError, match="batch_size"):
        resolve_auto(ARCH, {"r1_gamma": "auto"}, {"batch_sizes": 8}, resolution=16)


def _tiny_generator(seed=4):
    torch.manual_seed(seed)
    G = build_generator({**ARCH, "latent_dim": 3, "w_dim": 3, "channel_max": 4},
                        channels=2, resolution=16)
    return G.eval()  # const noise: the synthesis network a function of w


def test_path_lengths_match_a_direct_jacobian():
    from medgan.training.stylegan2_loss import path_lengths, path_noise

    G = _tiny_generator()
    w = G.mapping(torch.randn(3, 3)).detach()
    torch.manual_seed(5)
    y = path_noise(G, w, lambda *s, like: torch.randn(*s, dtype=like.dtype))
    assert y.shape == (3, 2, 16, 16) and y.std() == pytest.approx(1 / 16, rel=0.2)
    lengths = path_lengths(G, w, y)
    def image(v):
        return G.synthesis(v[None, None].expand(1, G.num_ws, -1)).flatten()

    for i in range(2):  # J: d(image_i) / d(w_i), (2*16*16, 3), w_i broadcast to all layers,
        # column by column as Jacobian-vector products J e_k
        jac = torch.stack([torch.autograd.functional.jvp(image, w[i], e)[1]
                           for e in torch.eye(3)], dim=1)
        direct = (jac.t() @ y[i].flatten()).norm()
        torch.testing.assert_close(lengths[i], direct, rtol=1e-4, atol=1e-6)
    # differentiable w.r.t. the generator's parameters
    grads = torch.autograd.grad(lengths.sum(), [G.const, G.to_rgb[-1].conv.weight])
    assert all(g.abs().sum() > 0 for g in grads)


def test_lazy_path_length_penalty_and_its_moving_average():
    from medgan.training.stylegan2_loss import path_lengths, path_noise

    G = _tiny_generator()
    loss = build_loss({"name": "stylegan2", "pl_weight": 2.0, "pl_interval": 3,
                       "pl_batch_shrink": 2, "pl_decay": 0.25})
    z = torch.randn(4, 3)
    a = 0.0
    for step in range(1, 7):
        torch.manual_seed(step)
        term, stats = loss.g_regulariser(G, lambda: z)
        if step % 3:
            assert term is None
            continue
        torch.manual_seed(step)  # the same y as the loss drew
        w = G.mapping(z[:2])
        lengths = path_lengths(G, w, path_noise(G, w, loss.randn))
        a += 0.25 * (float(lengths.mean()) - a)  # EMA of the lengths, before the penalty
        expected = 2.0 * 3 * ((lengths - a) ** 2).mean()
        torch.testing.assert_close(term, expected, rtol=1e-5, atol=1e-7)
        assert float(stats["pl_mean"]) == pytest.approx(a, rel=1e-5)
    assert loss.g_calls == 6 and loss.state_dict()["pl_mean"] == pytest.approx(a, rel=1e-5)
    # off by default: nothing drawn, nothing recorded
    off = build_loss({"name": "stylegan2"})
    assert off.g_regulariser(G, lambda: 1 / 0) == (None, {})
    assert "pl_mean" not in off.state_dict() and "pl_weight" not in off.config
    with pytest.raises(ValueError, match="pl_interval"):
        build_loss({"name": "stylegan2", "pl_weight": 2.0, "pl_interval": 0})
    with pytest.raises(ValueError, match="pl_decay"):
        build_loss({"name": "stylegan2", "pl_weight": 2.0, "pl_decay": 0.0})


def test_path_length_term_for_a_class_conditional_generator():
    condition = {"classes": ["a", "b"], "embed_dim": 2}
    G = build_generator(ARCH, channels=1, resolution=16, condition=condition)
    G.slot.labels = torch.tensor([1, 0, 1, 1])
    loss = build_loss({"name": "stylegan2", "pl_weight": 2.0, "pl_interval": 1})
    term, stats = loss.g_regulariser(G, lambda: torch.randn(4, 8))
    assert term.ndim == 0 and torch.isfinite(term) and float(stats["pl_mean"]) > 0
    term.backward()
    assert G.embedding.weight.grad[1].abs().sum() > 0  # labels [1, 0] of the 2 rows
