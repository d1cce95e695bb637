"""Progressive GAN (Karras 2018 / Beers 2018): growth, fade-in, equalized LR, schedule, EMA."""

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F

from medgan.models import pggan
from medgan.models.pggan import (
    EqualizedConv2d,
    EqualizedLinear,
    Phase,
    PixelNorm,
    blend_reals,
    build_discriminator,
    build_generator,
    downsample_to,
    ema_update,
    pggan_schedule,
    stage_at,
)

SMALL = {"name": "pggan", "latent_dim": 8, "filters": {"default": 8, "16": 6, "32": 4}}
ATOL = 1e-5


def _nets(channels=2, resolution=32, arch=SMALL):
    torch.manual_seed(0)
    return (build_generator(arch, channels=channels, resolution=resolution),
            build_discriminator(arch, channels=channels, resolution=resolution))


@pytest.mark.parametrize("channels", [1, 4, 7])
def test_shapes_at_every_level(channels):
    G, D = _nets(channels)
    z = torch.randn(3, 8)
    assert (G.latent_dim, G.channels, G.resolution) == (8, channels, 32)
    for level in range(4):
        for alpha in (0.5, 1.0):
            G.set_stage(level, alpha)
            D.set_stage(level, alpha)
            with torch.no_grad():
                x = G(z)
                logits = D(x)
            res = 4 * 2**level
            assert x.shape == (3, channels, res, res) and G.current_resolution == res
            assert logits.shape == (3,) and torch.isfinite(logits).all()


def test_filters_per_resolution_and_kernel_size():
    G, D = _nets(arch={**SMALL, "kernel_size": 5})
    assert G.widths == D.widths == [8, 8, 6, 4]  # 4, 8, 16, 32 px
    assert all(m.weight.shape[-1] in (1, 5) for m in G.modules() if isinstance(m, EqualizedConv2d))
    beers = pggan.DEFAULTS["filters"]
    assert [pggan.per_resolution(beers, 4 * 2**i, "f") for i in range(8)] == [
        128, 128, 128, 128, 128, 128, 64, 16]
    assert pggan.per_resolution({"default": 3, 8: 5}, 64, "f") == 5  # int keys from YAML
    assert pggan.per_resolution(7, 512, "f") == 7


def test_generator_fade_endpoints():
    G, _ = _nets()
    z = torch.randn(4, 8)
    with torch.no_grad():
        for level in range(1, 4):
            G.set_stage(level - 1, 1.0)
            low = G(z)
            G.set_stage(level, 0.0)
            at0 = G(z)
            G.set_stage(level, 1.0)
            at1 = G(z)
            G.set_stage(level, 0.5)
            half = G(z)
            torch.testing.assert_close(at0, F.interpolate(low, scale_factor=2, mode="nearest"),
                                       atol=ATOL, rtol=0)
            new = G.to_rgb[level](G.features(z, level))  # the new block's output
            torch.testing.assert_close(at1, new, atol=ATOL, rtol=0)
            torch.testing.assert_close(half, (at0 + at1) / 2, atol=ATOL, rtol=0)
            assert (at1 - at0).abs().max() > 1e-3  # the endpoints differ: the test can fail


def test_discriminator_fade_endpoints():
    _, D = _nets()
    torch.manual_seed(1)
    for level in range(1, 4):
        res = 4 * 2**level
        x = torch.randn(4, 2, res, res)
        with torch.no_grad():
            D.set_stage(level - 1, 1.0)
            low = D(F.avg_pool2d(x, 2))  # old path: previous fromRGB on the pooled input
            D.set_stage(level, 0.0)
            at0 = D(x)
            D.set_stage(level, 1.0)
            at1 = D(x)
            new = D._block(level, D._from_rgb(level, x))  # new path: new fromRGB and block
            for i in range(level - 1, 0, -1):
                new = D._block(i, new)
            new = D.head(new)
            torch.testing.assert_close(at0, low, atol=ATOL, rtol=0)
            torch.testing.assert_close(at1, new, atol=ATOL, rtol=0)
            assert (at1 - at0).abs().max() > 1e-4
            # at alpha 0 D ignores detail finer than the previous resolution
            D.set_stage(level, 0.0)
            torch.testing.assert_close(D(blend_reals(x, 0.0)), at0, atol=ATOL, rtol=0)


def test_blend_reals():
    x = torch.randn(2, 3, 8, 8)
    low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    torch.testing.assert_close(blend_reals(x, 0.0), low)
    assert torch.equal(blend_reals(x, 1.0), x)
    torch.testing.assert_close(blend_reals(x, 0.25), 0.25 * x + 0.75 * low)
    torch.testing.assert_close(downsample_to(x, 4), F.avg_pool2d(x, 2))
    assert downsample_to(x, 8) is x
    with pytest.raises(ValueError, match="alpha"):
        blend_reals(x, 1.5)


def test_equalized_lr_scale():
    conv = EqualizedConv2d(6, 5, 3)
    assert conv.weight_scale == pytest.approx(math.sqrt(2 / (6 * 9)))
    lin = EqualizedLinear(10, 4)
    assert lin.weight_scale == pytest.approx(math.sqrt(2 / 10))
    G, D = _nets(arch={**SMALL, "kernel_size": 5})
    for m in [*G.blocks.modules(), *D.blocks.modules(), *D.from_rgb.modules()]:
        if isinstance(m, EqualizedConv2d):
            fan_in = m.weight[0].numel()
            assert m.weight_scale == pytest.approx(math.sqrt(2 / fan_in))
    assert G.to_rgb[0].weight_scale == pytest.approx(1 / math.sqrt(8))  # linear: gain 1
    # weights are stored N(0, 1) and the effective conv uses weight * scale
    torch.manual_seed(0)
    big = EqualizedConv2d(64, 64, 3)
    assert abs(big.weight.std().item() - 1) < 0.02 and big.bias.abs().max() == 0
    x = torch.randn(2, 64, 5, 5)
    torch.testing.assert_close(big(x), F.conv2d(x, big.weight * big.weight_scale, padding=1))


def test_pixel_norm_unit_mean_square():
    x = torch.randn(3, 7, 5, 5) * torch.rand(3, 1, 5, 5) * 10
    y = PixelNorm()(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(3, 5, 5))
    z = PixelNorm()(torch.randn(4, 16) * 3)  # the latent is normalised the same way
    torch.testing.assert_close(z.square().mean(dim=1), torch.ones(4))


def test_stage_is_saved_and_validated():
    G, _ = _nets()
    G.set_stage(2, 0.25)
    buf = io.BytesIO()
    torch.save({"generator": G.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["generator"]
    G2 = build_generator(SMALL, channels=2, resolution=32)
    assert (G2.level, G2.alpha) == (3, 1.0)  # built at full size
    G2.load_state_dict(state)
    assert (G2.level, G2.alpha) == (2, 0.25)
    z = torch.randn(2, 8)
    torch.testing.assert_close(G2(z), G(z))
    with pytest.raises(ValueError, match="level"):
        G.set_stage(4, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        G.set_stage(1, -0.1)
    with pytest.raises(ValueError, match="PGGANDiscriminator input"):
        _nets()[1](torch.randn(2, 2, 16, 16))  # at level 3 D wants 32 px


def test_config_errors():
    with pytest.raises(ValueError, match="filtres"):
        build_generator({**SMALL, "filtres": 3}, channels=1, resolution=32)
    with pytest.raises(ValueError, match="odd"):
        build_generator({**SMALL, "kernel_size": 4}, channels=1, resolution=32)
    with pytest.raises(ValueError, match="power of two"):
        build_discriminator(SMALL, channels=1, resolution=48)
    with pytest.raises(ValueError, match="default"):
        build_generator({**SMALL, "filters": {"16": 4}}, channels=1, resolution=32)
    with pytest.raises(ValueError, match="resolution"):
        build_generator({**SMALL, "filters": {"default": 4, "big": 2}}, channels=1,
                        resolution=32)
    with pytest.raises(ValueError, match="positive"):
        build_generator({**SMALL, "filters": {"default": 4, "256": 0}}, channels=1,
                        resolution=32)


def test_beers_defaults():
    G = build_generator({"name": "pggan"}, channels=7, resolution=16)
    D = build_discriminator({"name": "pggan"}, channels=7, resolution=16)
    assert G.latent_dim == 128 and G.widths == D.widths == [128, 128, 128]
    assert D(G(torch.randn(2, 128))).shape == (2,)
    assert D.mbstd.group_size == 4


def test_beers_schedule_256():
    phases = pggan_schedule(256, steps_per_phase=20000, batch_sizes={"default": 16, 512: 8})
    assert phases[0] == Phase(0, "stable", 20000, 16)
    assert phases[1:] == [Phase(level, kind, 20000, 16)
                          for level in range(1, 7) for kind in ("fade", "stable")]
    assert sum(p.steps for p in phases) == 20000 + 6 * 40000
    assert stage_at(0, phases) == (0, 1.0, 16)
    assert stage_at(19999, phases) == (0, 1.0, 16)
    assert stage_at(20000, phases) == (1, 0.0, 16)  # first fade step
    assert stage_at(30000, phases) == (1, 0.5, 16)
    assert stage_at(39999, phases) == (1, 19999 / 20000, 16)
    assert stage_at(40000, phases) == (1, 1.0, 16)  # first stable step
    assert stage_at(60000, phases) == (2, 0.0, 16)
    assert stage_at(259999, phases) == (6, 1.0, 16)
    assert stage_at(10**7, phases) == (6, 1.0, 16)  # after the end: the final stage
    with pytest.raises(ValueError, match="step"):
        stage_at(-1, phases)


def test_schedule_batch_sizes_and_start():
    phases = pggan_schedule(512)  # Beers' fundus setting: defaults
    assert [p.level for p in phases if p.kind == "stable"] == list(range(8))
    assert {p.batch_size for p in phases if p.level < 7} == {16}
    assert {p.batch_size for p in phases if p.level == 7} == {8}
    phases = pggan_schedule(32, start_resolution=8, steps_per_phase=3, batch_sizes=4)
    assert phases == [Phase(1, "stable", 3, 4), Phase(2, "fade", 3, 4), Phase(2, "stable", 3, 4),
                      Phase(3, "fade", 3, 4), Phase(3, "stable", 3, 4)]
    assert stage_at(4, phases) == (2, 1 / 3, 4)
    with pytest.raises(ValueError, match="start_resolution"):
        pggan_schedule(16, start_resolution=32, steps_per_phase=1)


def test_ema_update_formula():
    G, _ = _nets()
    ema = copy.deepcopy(G)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
    G.set_stage(1, 0.3)
    before = [p.clone() for p in ema.parameters()]
    ema_update(ema, G, 0.9)
    for e, b, p in zip(ema.parameters(), before, G.parameters(), strict=True):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * p)
    assert (ema.level, ema.alpha) == (1, 0.3)
    ema_update(ema, G, 0.0)
    assert all(torch.equal(e, p) for e, p in zip(ema.parameters(), G.parameters(), strict=True))


def test_generator_ema_ramps_up_so_a_short_run_does_not_keep_its_init():
    # issue 16: Delplace's 200-step ProGANs averaged with 0.999 kept 0.999**200 = 82 % of the
    # random init, and every output was noise; the ramp-up (stylegan2-ada) bounds the half-life
    from medgan.training.state import GeneratorEMA, ema_decay_at

    assert ema_decay_at(0.999, None) == 0.999
    assert ema_decay_at(0.999, 1) < 1e-5  # the first update copies G
    assert ema_decay_at(0.999, 200) == pytest.approx(0.5 ** 0.1)
    assert ema_decay_at(0.999, 10**6) == 0.999
    G = torch.nn.Linear(4, 4)
    init = G.weight.detach().clone()
    ema = GeneratorEMA(G, 0.999)
    for step in range(1, 201):
        with torch.no_grad():
            G.weight.fill_(float(step))
        ema.update(G, step=step)
    # the average sits near the last weights, not at the initial ones
    assert (ema.model.weight - 200.0).abs().max() < 20
    assert not torch.allclose(ema.model.weight, init)


def test_one_wgan_gp_step_at_level_2_fading():
    G, D = _nets(channels=3)
    for net in (G, D):
        net.set_stage(2, 0.5)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.0, 0.99))
    real = blend_reals(downsample_to(torch.randn(4, 3, 32, 32), 16), 0.5)
    fake = G(torch.randn(4, 8)).detach()
    # WGAN-GP with Karras's drift term: lambda 10, epsilon 0.001
    eps = torch.rand(4, 1, 1, 1)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(D(mixed).sum(), mixed, create_graph=True)
    penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    real_score = D(real)
    d_loss = D(fake).mean() - real_score.mean() + 10 * penalty + 1e-3 * real_score.square().mean()
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = -D(G(torch.randn(4, 8))).mean()
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss) and torch.isfinite(penalty)
    assert G.to_rgb[2].weight.grad.abs().sum() > 0 and G.to_rgb[1].weight.grad.abs().sum() > 0
    assert G.to_rgb[3].weight.grad is None  # the 32 px block is not in use yet
    assert all(torch.isfinite(p).all() for p in [*G.parameters(), *D.parameters()])
