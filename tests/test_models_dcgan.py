"""DCGAN architecture (Radford 2016 with Han 2018's changes), its registry, and the GAN losses."""

import pytest
import torch
from torch import nn

from medgan.models import ARCHITECTURES, build_discriminator, build_generator
from medgan.training.losses import LOSSES, build_loss

HAN = {"name": "dcgan", "latent_dim": 100, "width": 64, "max_width": 512, "kernel_size": 4,
       "d_activation": "elu", "output_activation": "none"}
SMALL = {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 16}


def _convs(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


@pytest.mark.parametrize("channels", [1, 4, 7])
@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_shapes(channels, resolution):
    torch.manual_seed(0)
    G = build_generator(SMALL, channels=channels, resolution=resolution)
    D = build_discriminator(SMALL, channels=channels, resolution=resolution)
    x = G(torch.randn(3, 8))
    assert x.shape == (3, channels, resolution, resolution)
    assert D(x).shape == (3,)
    assert (G.latent_dim, G.channels, G.resolution) == (8, channels, resolution)


@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5])
def test_any_kernel_size_keeps_shapes(kernel_size):
    arch = {**SMALL, "kernel_size": kernel_size}
    G = build_generator(arch, channels=2, resolution=32)
    D = build_discriminator(arch, channels=2, resolution=32)
    assert D(G(torch.randn(2, 8))).shape == (2,)
    assert all(m.kernel_size == (kernel_size,) * 2 for m in _convs(G)[1:])


def test_han_widths_at_64px():
    G = build_generator(HAN, channels=1, resolution=64)
    D = build_discriminator(HAN, channels=1, resolution=64)
    # G: project z to 4x4x512, then 256, 128, 64 at 8, 16, 32 px, then 1 channel at 64 px
    assert [(m.in_channels, m.out_channels) for m in _convs(G)] == [
        (100, 512), (512, 256), (256, 128), (128, 64), (64, 1)]
    assert [m.num_features for m in G.modules() if isinstance(m, nn.BatchNorm2d)] == [
        512, 256, 128, 64]
    # D: 64, 128, 256, 512 at 32, 16, 8, 4 px (no BatchNorm on the input layer), then a logit
    assert [(m.in_channels, m.out_channels) for m in _convs(D)] == [
        (1, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert [m.num_features for m in D.modules() if isinstance(m, nn.BatchNorm2d)] == [
        128, 256, 512]
    assert all(m.kernel_size == (4, 4) for m in _convs(G) + _convs(D))
    assert sum(isinstance(m, nn.ELU) for m in D.modules()) == 4
    assert not any(isinstance(m, (nn.Tanh, nn.Sigmoid)) for m in G.modules())  # Han: linear output
    assert not any(isinstance(m, nn.Sigmoid) for m in D.modules())  # losses work on logits


def test_widths_at_128px_are_capped():
    G = build_generator(HAN, channels=4, resolution=128)
    D = build_discriminator(HAN, channels=4, resolution=128)
    assert [m.out_channels for m in _convs(G)] == [512, 512, 256, 128, 64, 4]
    assert [m.out_channels for m in _convs(D)] == [64, 128, 256, 512, 512, 1]


def test_options_and_init():
    torch.manual_seed(0)
    arch = {**HAN, "d_activation": "leaky_relu", "output_activation": "tanh"}
    G = build_generator(arch, channels=1, resolution=64)
    D = build_discriminator(arch, channels=1, resolution=64)
    assert isinstance(list(G.modules())[-1], nn.Tanh)
    assert G(torch.randn(2, 100)).abs().max() <= 1
    leaky = [m for m in D.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 4 and all(m.negative_slope == 0.2 for m in leaky)
    w = _convs(G)[1].weight
    assert abs(w.mean().item()) < 2e-3 and abs(w.std().item() - 0.02) < 2e-3


def test_config_errors():
    with pytest.raises(ValueError, match="widht"):
        build_generator({**HAN, "widht": 3}, channels=1, resolution=64)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_generator({"name": "nope"}, channels=1, resolution=64)
    with pytest.raises(ValueError, match="power of two"):
        build_discriminator(HAN, channels=1, resolution=48)
    with pytest.raises(ValueError, match="d_activation"):
        build_discriminator({**HAN, "d_activation": "relu"}, channels=1, resolution=64)
    assert "dcgan" in ARCHITECTURES


def test_shape_asserts_at_boundaries():
    G = build_generator(SMALL, channels=2, resolution=16)
    D = build_discriminator(SMALL, channels=2, resolution=16)
    with pytest.raises(ValueError, match="latent|z"):
        G(torch.randn(2, 9))
    with pytest.raises(ValueError, match="Discriminator input"):
        D(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="Discriminator input"):
        D(torch.randn(2, 2, 32, 32))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_one_step_of_each_loss_is_finite(name):
    torch.manual_seed(0)
    loss = build_loss({"name": name})
    G = build_generator(SMALL, channels=2, resolution=16)
    D = build_discriminator(SMALL, channels=2, resolution=16)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
    real = torch.randn(4, 2, 16, 16)
    with torch.no_grad():
        fake = G(torch.randn(4, 8))
    d_loss, stats = loss.d_loss(D, real, fake)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    loss.after_d_step(D)
    g_loss, _ = loss.g_loss(D, G(torch.randn(4, 8)))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert all(torch.isfinite(v) and v.ndim == 0 for v in stats.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


def test_wgan_clips_all_critic_weights():
    torch.manual_seed(0)
    loss = build_loss({"name": "wgan", "clip": 0.01})
    assert loss.n_critic == 5
    D = build_discriminator(SMALL, channels=1, resolution=16)
    assert max(p.abs().max().item() for p in D.parameters()) > 0.5  # BatchNorm scales ~1
    opt = torch.optim.RMSprop(D.parameters(), lr=0.1)
    d_loss, stats = loss.d_loss(D, torch.randn(8, 1, 16, 16), torch.randn(8, 1, 16, 16))
    assert torch.allclose(stats["wasserstein"], -d_loss)
    d_loss.backward()
    opt.step()
    loss.after_d_step(D)
    assert max(p.abs().max().item() for p in D.parameters()) <= 0.01


def test_gan_loss_values():
    loss = build_loss({"name": "gan"})

    class Constant(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0])

    d_loss, _ = loss.d_loss(Constant(), torch.zeros(2, 1), torch.zeros(2, 1))
    g_loss, _ = loss.g_loss(Constant(), torch.zeros(2, 1))
    assert d_loss.item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    assert g_loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_loss_config_errors():
    with pytest.raises(ValueError, match="clip"):
        build_loss({"name": "gan", "clip": 0.01})
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss({"name": "hinge2"})
    with pytest.raises(ValueError, match="n_critic"):
        build_loss({"name": "wgan", "n_critic": 0})
