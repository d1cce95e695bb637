"""The architectures of the four studies: shapes, paper tables, minibatch stddev, Kitchen's
noise, config errors, and one optimisation step with the GAN and WGAN losses."""

import numpy as np
import pytest
import torch
from torch import nn

from medgan.models import ARCHITECTURES, build_discriminator, build_generator, resolved_config
from medgan.models.layers import MinibatchStddev
from medgan.training.losses import build_loss

SMALL = {
    "dcgan": {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
    "dcgan_delplace": {"name": "dcgan_delplace", "latent_dim": 8, "width": 4, "max_width": 8,
                       "d_width": 4, "d_max_width": 8, "d_dense_width": 8},
    "srresnet": {"name": "srresnet", "latent_dim": 8, "width": 4, "n_blocks": 2, "d_width": 4,
                 "d_max_width": 8, "d_blocks_per_stage": 1, "minibatch_stddev": True},
    "kitchen": {"name": "kitchen", "latent_dim": 8, "dense_width": 4, "width": 4,
                "max_width": 8, "d_width": 4, "d_max_width": 8},
    "stylegan2": {"name": "stylegan2", "latent_dim": 8, "w_dim": 8, "mapping_layers": 2,
                  "channel_base": 64, "channel_max": 8},
}


def _convs(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _on_meta(arch: dict, channels: int, resolution: int) -> tuple[nn.Module, nn.Module]:
    """Full-size networks without allocating their weights."""
    with torch.device("meta"):
        return (build_generator(arch, channels=channels, resolution=resolution),
                build_discriminator(arch, channels=channels, resolution=resolution))


def test_every_architecture_is_tested():
    assert set(SMALL) <= set(ARCHITECTURES)
    assert {"dcgan", "dcgan_delplace", "srresnet", "kitchen"} <= set(ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("channels", [1, 4, 7])
def test_shapes(name, resolution, channels):
    torch.manual_seed(0)
    G = build_generator(SMALL[name], channels=channels, resolution=resolution)
    D = build_discriminator(SMALL[name], channels=channels, resolution=resolution)
    assert (G.latent_dim, G.channels, G.resolution) == (8, channels, resolution)
    x = G(torch.randn(3, 8))
    assert x.shape == (3, channels, resolution, resolution)
    logits = D(x)
    assert logits.shape == (3,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_boundary_shape_asserts(name):
    G = build_generator(SMALL[name], channels=2, resolution=16)
    D = build_discriminator(SMALL[name], channels=2, resolution=16)
    with pytest.raises(ValueError, match="expected shape"):
        G(torch.randn(2, 9))
    with pytest.raises(ValueError, match="expected shape"):
        D(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="expected shape"):
        D(torch.randn(2, 2, 32, 32))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_unknown_key_and_bad_resolution(name):
    with pytest.raises(ValueError, match="bogus_key"):
        build_generator({**SMALL[name], "bogus_key": 1}, channels=1, resolution=16)
    with pytest.raises(ValueError, match="bogus_key"):
        build_discriminator({**SMALL[name], "bogus_key": 1}, channels=1, resolution=16)
    for resolution in (24, 12) if name == "dcgan" else (8, 24):  # Han's DCGAN also runs at 8
        with pytest.raises(ValueError, match="resolution"):
            build_generator(SMALL[name], channels=1, resolution=resolution)
    with pytest.raises(ValueError, match="channels"):
        build_discriminator(SMALL[name], channels=0, resolution=16)


@pytest.mark.parametrize("name", ["dcgan_delplace", "srresnet", "kitchen"])
def test_defaults_are_complete(name):
    cfg = resolved_config({"name": name})
    assert cfg == ARCHITECTURES[name].defaults


def test_delplace_dcgan_matches_tables_1_and_2():
    G, D = _on_meta({"name": "dcgan_delplace"}, channels=1, resolution=256)
    assert G.latent_dim == 256
    dense = [m for m in G.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [(256, 256 * 8 * 8)]
    convs = _convs(G)  # Table 1: nine 5x5 transposed convs
    assert all(isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (5, 5) for m in convs)
    assert [m.out_channels for m in convs] == [256] * 6 + [128, 64, 1]
    assert [m.stride[0] for m in convs] == [2, 1, 2, 1, 2, 1, 2, 2, 1]
    assert isinstance(G.main[-1], nn.Tanh)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in G.modules()) == 9  # dense + 8 hidden

    convs = _convs(D)  # Table 2: five 5x5 stride-2 convs, 64 ... 1024
    assert all(isinstance(m, nn.Conv2d) and m.kernel_size == (5, 5) and m.stride == (2, 2)
               for m in convs)
    assert [m.out_channels for m in convs] == [64, 128, 256, 512, 1024]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 4  # not on the first
    dense = [m for m in D.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [((1024 + 1) * 8 * 8, 1024),
                                                                (1024, 1)]
    assert sum(isinstance(m, MinibatchStddev) for m in D.modules()) == 1
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.Sigmoid) for m in D.modules())  # logits


def test_delplace_dcgan_real_weights_at_64px():
    """The same structure with real weights, run forward (64 px keeps it fast)."""
    arch = {"name": "dcgan_delplace", "width": 4, "max_width": 8, "d_width": 4,
            "d_max_width": 16, "d_dense_width": 8}
    G = build_generator(arch, channels=1, resolution=64)
    assert [m.out_channels for m in _convs(G)] == [8, 8, 8, 8, 4, 1]
    z = torch.rand(2, 256) * 2 - 1  # Delplace: z ~ U(-1, 1)
    x = G(z)
    assert x.shape == (2, 1, 64, 64) and x.abs().max() <= 1
    assert build_discriminator(arch, channels=1, resolution=64)(x).shape == (2,)


def test_srresnet_matches_delplace_description():
    G, D = _on_meta({"name": "srresnet"}, channels=1, resolution=256)
    assert G.latent_dim == 256 and G.start == 16 and G.width == 64
    assert len(G.blocks) == 16
    assert sum(isinstance(m, nn.PixelShuffle) for m in G.modules()) == 4
    blocks = [m for m in D.modules() if type(m).__name__ == "DiscriminatorResBlock"]
    assert len(blocks) == 12
    strided = [m for m in _convs(D) if m.stride == (2, 2)]
    assert all(m.kernel_size == (3, 3) for m in _convs(D))
    assert [m.out_channels for m in strided] == [32, 64, 128, 256, 512, 1024, 2048]
    dense = [m for m in D.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [(2048 * 2 * 2, 1)]
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Sigmoid)) for m in D.modules())


def test_srresnet_block_count_and_latent_normalisation():
    arch = {**SMALL["srresnet"], "n_blocks": 3}
    G = build_generator(arch, channels=1, resolution=16).eval()
    assert len(G.blocks) == 3 and G.start == 4  # 16 / 2**4 < 4, so 4 with 2 upsamplings
    z = torch.randn(2, 8)
    torch.testing.assert_close(G(z), G(5 * z))  # z is normalised before the dense layer


def test_kitchen_matches_tables_1_and_2():
    G = build_generator({"name": "kitchen"}, channels=3, resolution=16)
    D = build_discriminator({"name": "kitchen"}, channels=3, resolution=16)
    assert G.latent_dim == 25
    assert [(m.in_features, m.out_features) for m in G.modules()
            if isinstance(m, nn.Linear)] == [(25, 256)]
    convs = _convs(G)
    assert [m.out_channels for m in convs] == [32, 16, 3]
    assert [m.stride[0] for m in convs] == [2, 2, 1]
    assert all(isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (3, 3) for m in convs)
    assert G(torch.randn(2, 25)).min() >= 0  # Table 1: ReLU output

    convs = _convs(D)
    assert [m.out_channels for m in convs] == [32, 64, 128]
    assert [m.stride[0] for m in convs] == [1, 2, 2]
    assert all(m.kernel_size == (3, 3) for m in convs)
    assert all(m.negative_slope == 0.1 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    noises = [m for m in D.modules() if type(m).__name__ == "GaussianNoise"]
    assert len(noises) == 4 and all(m.std == 0.5 for m in noises)  # input + 3 conv layers
    assert sum(isinstance(m, nn.AdaptiveAvgPool2d) for m in D.modules()) == 1
    assert sum(isinstance(m, nn.Dropout) for m in D.modules()) == 1
    assert [(m.in_features, m.out_features) for m in D.modules()
            if isinstance(m, nn.Linear)] == [(128, 1)]


def test_kitchen_adds_layers_for_larger_images():
    G = build_generator({"name": "kitchen"}, channels=1, resolution=64)
    assert [m.out_channels for m in _convs(G)] == [32, 32, 32, 16, 1]
    D = build_discriminator({"name": "kitchen"}, channels=1, resolution=64)
    assert [m.out_channels for m in _convs(D)] == [32, 64, 128, 128, 128]


def test_kitchen_noise_only_in_training_mode():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    D = build_discriminator({"name": "kitchen", "dropout": 0.0}, channels=3, resolution=16)
    D.eval()
    torch.testing.assert_close(D(x), D(x))
    D.train()
    a, b = D(x), D(x)
    assert not torch.allclose(a, b)
    quiet = build_discriminator({"name": "kitchen", "dropout": 0.0, "noise_std": 0.0},
                                channels=3, resolution=16).train()
    torch.testing.assert_close(quiet(x), quiet(x))
    with pytest.raises(ValueError, match="noise_std"):
        build_discriminator({"name": "kitchen", "noise_std": -1.0}, channels=3, resolution=16)


def test_srresnet_upsampling_starts_without_a_checkerboard():
    # issue 16: independent He weights before each pixel shuffle made the four sub-pixels of
    # every 2x2 block differ: the 200-step default runs ended with a checkerboard. ICNR makes
    # conv + shuffle start as nearest-neighbour upsampling (BatchNorm and ReLU act per channel).
    torch.manual_seed(0)
    G = build_generator({"name": "srresnet", "latent_dim": 16, "width": 8, "n_blocks": 1,
                         "n_upsample": 2}, channels=1, resolution=16).eval()
    h = G.dense_act(G.dense(torch.randn(4, 16)).reshape(4, 8, 4, 4))
    up = G.upsample(h + G.blocks_out(G.blocks(h)))  # (4, 8, 16, 16) after two shuffles
    blocks = up.reshape(4, 8, 8, 2, 8, 2)
    torch.testing.assert_close(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    assert up.std() > 0


def test_kitchen_init_keeps_the_image_above_the_discriminator_noise():
    # issue 16: with Radford's N(0, 0.02) weights every conv shrank its input about tenfold and
    # D's noise (std 0.5 after every layer) drowned the lesion: D stayed at chance and G
    # collapsed. The authors' unit-scaling init keeps each conv's output at its input's scale.
    torch.manual_seed(0)
    D = build_discriminator({"name": "kitchen", "init": "uniform_unit_scaling"}, channels=3,
                            resolution=16).eval()
    x = torch.rand(64, 3, 16, 16)
    first = D.main[1](x)  # the first conv (after the input noise, an identity in eval mode)
    assert first.std() > 0.3 * x.std()
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        fan_in = conv.weight[0].numel()
        assert conv.weight.std().item() == pytest.approx(1.5 / fan_in**0.5, rel=0.15)
    G = build_generator({"name": "kitchen", "init": "uniform_unit_scaling"}, channels=3,
                        resolution=16)
    assert G.dense[0].bias.eq(0.1).all() and G.main[-2].bias.eq(0.0).all()
    out = G(torch.randn(64, 25))
    assert out.std() > 0.05  # N(0, 0.02) weights gave about 1e-4


def _numpy_mbstd(x: np.ndarray, group: int) -> np.ndarray:
    n = x.shape[0]
    out = np.empty((n, 1) + x.shape[2:], dtype=np.float64)
    for j in range(n // group):
        members = [i for i in range(n) if i % (n // group) == j]
        std = np.sqrt(x[members].astype(np.float64).var(axis=0) + 1e-8).mean()
        out[members] = std
    return np.concatenate([x, out], axis=1)


@pytest.mark.parametrize(("batch", "group"), [(8, 4), (6, 3), (5, 1), (2, 2), (1, 1)])
def test_minibatch_stddev_matches_numpy(batch, group):
    x = torch.randn(batch, 3, 4, 5, generator=torch.Generator().manual_seed(batch))
    y = MinibatchStddev(group_size=4)(x)
    assert y.shape == (batch, 4, 4, 5)
    torch.testing.assert_close(y[:, :3], x)
    np.testing.assert_allclose(y.numpy(), _numpy_mbstd(x.numpy(), group), rtol=1e-5, atol=1e-6)
    if group > 1:
        assert (y[:, 3] > 0).all()


def test_minibatch_stddev_rejects_bad_group_size():
    with pytest.raises(ValueError, match="group_size"):
        MinibatchStddev(group_size=0)


@pytest.mark.parametrize("loss_name", ["gan", "wgan"])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_optimisation_step_is_finite(name, loss_name):
    torch.manual_seed(1)
    G = build_generator(SMALL[name], channels=2, resolution=16)
    D = build_discriminator(SMALL[name], channels=2, resolution=16)
    assert not any(isinstance(m, nn.Sigmoid) for m in D.modules())  # logits, also for WGAN
    loss = build_loss({"name": loss_name})
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(4, 2, 16, 16) * 2 - 1
    before = [p.detach().clone() for p in G.parameters()]
    d_loss, d_stats = loss.d_loss(D, real, G(torch.randn(4, 8)).detach())
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    loss.after_d_step(D)
    g_loss, _ = loss.g_loss(D, G(torch.randn(4, 8)))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in d_stats.values())
    assert all(torch.isfinite(p).all() for p in [*G.parameters(), *D.parameters()])
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters(), strict=True))
