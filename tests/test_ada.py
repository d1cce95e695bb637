"""Adaptive discriminator augmentation (medgan.training.augment): each transformation is
differentiable, moves label channels with their image, never mixes MRI sequences; p rises when
D overfits a tiny dataset and stays near 0 on a large one; exact resume with p > 0."""

import json

import pytest
import torch

from medgan.models import build_discriminator
from medgan.training.augment import AdaptiveAugment, AugmentPipe
from medgan.training.checkpoint import load_checkpoint
from medgan.training.losses import build_loss
from medgan.training.presets import stylegan2_auto

GEOMETRIC = ("xflip", "rot90", "xint", "scale", "rot", "aniso", "rot2", "xfrac")
COLOUR = ("bright", "contrast")
RGB_COLOUR = ("luma", "hue", "sat")


def _params(pipe, n, op, like, seed=0):
    """Parameters of ``n`` images at p = 1 with every transformation but ``op`` switched off."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, like):
        return torch.rand(*shape, generator=gen, dtype=like.dtype)

    params = pipe.draw(n, 1.0, rand, like)
    for key in params:
        if key != op:
            params[key] = torch.zeros_like(params[key])
    if op == "xflip" or op == "luma":
        params[op] = torch.ones_like(params[op])
    if op == "rot90":
        params[op] = torch.tensor([1.0, 2.0, 3.0][:n], dtype=like.dtype)
    return params


@pytest.mark.parametrize("op", GEOMETRIC + COLOUR + RGB_COLOUR)
def test_each_augmentation_is_differentiable(op):
    channels = ["R", "G", "B", "vessels"] if op in RGB_COLOUR else ["T1", "FLAIR", "edema"]
    pipe = AugmentPipe(channels)
    x = torch.randn(1, len(channels), 5, 5, dtype=torch.float64, requires_grad=True)
    params = _params(pipe, 1, op, x)
    assert not torch.equal(pipe.apply(x, params), x)  # the transformation does something
    assert torch.autograd.gradcheck(lambda t: pipe.apply(t, params), (x,), eps=1e-6, atol=1e-5,
                                    fast_mode=True)


@pytest.mark.parametrize("op", GEOMETRIC + COLOUR)
def test_label_channels_move_with_their_image_and_take_no_colour(op):
    pipe = AugmentPipe(["T1", "FLAIR", "edema"])
    x = torch.randn(3, 3, 16, 16)
    x[:, 2] = x[:, 0]  # the label channel a copy of T1: geometry must keep it one
    out = pipe.apply(x, _params(pipe, 3, op, x))
    if op in GEOMETRIC:
        torch.testing.assert_close(out[:, 2], out[:, 0])
    else:
        assert torch.equal(out[:, 2], x[:, 2])  # colour ops leave labels alone
        assert not torch.equal(out[:, 0], x[:, 0])


@pytest.mark.parametrize("op", COLOUR)
def test_colour_never_mixes_mri_sequences(op):
    pipe = AugmentPipe(["T1", "T1c", "T2", "FLAIR"])
    assert pipe.rgb_idx == []
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = pipe.apply(x, _params(pipe, 2, op, x))
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    assert grad[:, 1:].abs().max() == 0  # T1's output depends on T1 alone


def test_hue_mixes_rgb_but_not_the_vessel_map():
    pipe = AugmentPipe(["R", "G", "B", "vessels"])
    x = torch.rand(2, 4, 8, 8)
    out = pipe.apply(x, _params(pipe, 2, "hue", x))
    assert torch.equal(out[:, 3], x[:, 3])
    # a rotation about the luma axis keeps each pixel's distance from the mean colour
    centred = lambda t: t[:, :3] - t[:, :3].mean(dim=(2, 3), keepdim=True)  # noqa: E731
    torch.testing.assert_close(centred(out).norm(dim=1), centred(x).norm(dim=1))


def test_p_zero_is_the_identity_and_p_draws_per_image():
    pipe = AugmentPipe(["T1"])
    x = torch.randn(4, 1, 8, 8)
    assert pipe(x, 0.0, lambda *s, like: torch.rand(*s)) is x
    params = pipe.draw(4000, 0.3, lambda *s, like: torch.rand(*s), x)
    assert (params["xflip"] != 0).float().mean() == pytest.approx(0.15, abs=0.02)  # p / 2
    assert (params["bright"] != 0).float().mean() == pytest.approx(0.3, abs=0.03)


def _train_d(images_for_step, steps=100, speed_kimg=1.0):
    """Train a small StyleGAN2 D with ADA against fresh noise 'fakes'; the p it ends with."""
    torch.manual_seed(0)
    D = build_discriminator({"name": "stylegan2", "channel_base": 128, "channel_max": 16},
                            channels=1, resolution=16)
    loss = build_loss({"name": "stylegan2", "r1_gamma": 0.01,
                       "ada": {"interval": 2, "speed_kimg": speed_kimg}})
    loss.bind(["T1"])
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    ps = []
    for step in range(steps):
        value, stats = loss.d_loss(D, images_for_step(step), torch.randn(16, 1, 16, 16))
        opt.zero_grad()
        value.backward()
        opt.step()
        ps.append(loss.ada.p)
    return ps


def test_ada_p_rises_when_d_overfits_a_tiny_dataset_and_stays_near_zero_on_a_large_one(
        one_torch_thread):
    tiny = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    p_tiny = _train_d(lambda step: tiny.repeat(4, 1, 1, 1))
    large = torch.randn(16 * 100, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    p_large = _train_d(lambda step: large[16 * step : 16 * (step + 1)])
    # D memorised the 4 images: r_t > 0.6 and p grows until the augmentation hides them
    assert sum(p_tiny[50:]) / 50 > 0.1, p_tiny[::10]
    # every image new: D cannot tell real from noise; p may twitch once early (0.064 on one
    # x86 CPU, under 0.05 on another: float order) and is back at 0 for the second half
    assert max(p_large) < 0.1 and sum(p_large[50:]) / 50 < 0.02, p_large[::10]
    assert sum(p_tiny[50:]) > 5 * sum(p_large[50:]) + 1.0


def test_adaptive_state_round_trips():
    ada = AdaptiveAugment(["T1"], {"target": 0.6, "interval": 3, "speed_kimg": 1.0,
                                   "initial_p": 0.0})
    for _ in range(4):
        ada.observe(torch.ones(5))
    assert ada.p == pytest.approx(15 / 1000) and ada.images == 15  # r_t = 1 > 0.6
    state = ada.state_dict()
    assert state["sign_n"] == 5 and state["sign_sum"] == 5.0
    other = AdaptiveAugment(["T1"], {"target": 0.6, "interval": 3, "speed_kimg": 1.0,
                                     "initial_p": 0.0})
    other.load_state_dict(state)
    for a in (ada, other):
        for _ in range(2):
            a.observe(-torch.ones(5))
    assert other.state_dict() == ada.state_dict()


ARGS = {"channels": None, "resolution": 16, "seed": 5, "device": "cpu", "threads": 1,
        "progress": False,
        "architecture": {"name": "stylegan2", "latent_dim": 8, "w_dim": 8,
                         "mapping_layers": "auto", "channel_base": 64, "channel_max": 8,
                         "mbstd_group_size": "auto"},
        "loss": {"name": "stylegan2", "r1_gamma": "auto", "r1_interval": 3,
                 "ada": {"interval": 1, "speed_kimg": 0.1, "initial_p": 0.5}},
        "optimizer": {"name": "adam", "lr": 2e-3, "betas": [0.0, 0.99]}}
SCHEDULE = {"steps": 8, "batch_size": 4, "log_every": 2, "sample_every": 0,
            "ema_decay": "auto"}


def _kill_and_resume(tmp_path, monkeypatch, args):
    """Train ``args`` for 8 steps whole, and killed after step 5's checkpoint then resumed;
    assert the final weights, optimisers and loss states are the same. Returns the killed
    run's step-5 checkpoint, the whole run's config and both runs' last stats rows."""
    from conftest import noise_dataset, tensors_by_name

    import medgan.training.loop
    from medgan.training import train_gan

    data = noise_dataset(tmp_path / "data")

    def train(out, **kw):
        return train_gan(data, out, **{**args, "schedule": SCHEDULE, **kw})

    whole = train(tmp_path / "whole")
    real_step, calls = medgan.training.loop.train_step, []

    def dying_step(*a, **kw):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_step(*a, **kw)

    out = tmp_path / "killed"
    monkeypatch.setattr(medgan.training.loop, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(out, schedule={**SCHEDULE, "checkpoint_every": 5})
    monkeypatch.setattr(medgan.training.loop, "train_step", real_step)
    mid = load_checkpoint(out / "checkpoint.pt")
    assert mid["step"] == 5
    assert train(out, schedule={**SCHEDULE, "checkpoint_every": 5})["resumed_from_step"] == 5
    a, b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(
        out / "checkpoint.pt")
    assert a["loss_state"] == b["loss_state"]
    keys = ("generator", "discriminator", "generator_ema", "g_optimizer", "d_optimizer")
    ta, tb = tensors_by_name({k: a[k] for k in keys}), tensors_by_name({k: b[k] for k in keys})
    assert ta.keys() == tb.keys() and len(ta) > 20
    assert not [k for k in ta if not torch.equal(ta[k], tb[k])]
    last = [json.loads((d / "stats.jsonl").read_text().splitlines()[-1])
            for d in (tmp_path / "whole", out)]
    return mid, whole["config"], last


def test_stylegan2_ada_resume_after_a_kill_is_exact(tmp_path, monkeypatch):
    mid, config, (whole, resumed) = _kill_and_resume(tmp_path, monkeypatch, ARGS)
    assert config["loss"]["r1_gamma"] == pytest.approx(0.0002 * 256 / 4)
    assert config["schedule"]["ema_decay"] == stylegan2_auto(16, 4, 8)["ema_decay"]
    assert mid["loss_state"]["ada"]["p"] > 0
    assert mid["loss_state"]["d_steps"] == 5  # mid-way between lazy R1 steps 3 and 6
    assert resumed["ada_p"] == whole["ada_p"]


def test_stylegan2_path_length_resume_after_a_kill_is_exact(tmp_path, monkeypatch):
    """With path-length regularisation (every 2 G steps): its moving average ``a`` and lazy
    counter are in the checkpoint, and the resumed run ends where the whole one does."""
    args = {**ARGS, "loss": {**ARGS["loss"], "pl_weight": 2.0, "pl_interval": 2}}
    mid, config, (whole, resumed) = _kill_and_resume(tmp_path, monkeypatch, args)
    assert config["loss"]["pl_weight"] == 2.0 and config["loss"]["pl_interval"] == 2
    state = mid["loss_state"]
    assert state["g_calls"] == 5 and state["pl_mean"] > 0  # after lazy steps 2 and 4
    assert resumed["pl_mean"] == whole["pl_mean"] > state["pl_mean"]
    assert resumed["pl_penalty"] == whole["pl_penalty"]


def test_stylegan2_ada_trains_on_two_processes(tmp_path):
    """DDP as the other architectures: ADA's r_t is taken over the global batch, so p and the
    image count are those of the global batch on every process."""
    from conftest import noise_dataset

    from medgan.training import train_gan

    data = noise_dataset(tmp_path / "data")
    args = {**ARGS, "loss": {**ARGS["loss"], "ada": {"interval": 1, "speed_kimg": 0.1,
                                                    "initial_p": 0.5}}}
    run = train_gan(data, tmp_path / "two", processes=2,
                    **{**args, "schedule": {**SCHEDULE, "steps": 3}})
    assert run["config"]["loss"]["ada"]["initial_p"] == 0.5
    state = load_checkpoint(tmp_path / "two" / "checkpoint.pt")["loss_state"]
    assert state["ada"]["images"] == 3 * SCHEDULE["batch_size"]  # global batches
    # each adjustment moves p by 4 images / 100 = 0.04
    assert any(state["ada"]["p"] == pytest.approx(0.5 + 0.04 * k) for k in (-3, -1, 1, 3))


BEERS_BRATS = ["T1", "T1c", "T2", "FLAIR", "edema", "necrosis", "enhancing"]
BEERS_FUNDUS = ["R", "G", "B", "vessels"]


@pytest.mark.parametrize("channels", [BEERS_BRATS, BEERS_FUNDUS])
def test_beers_channel_layouts_colour_only_their_images(channels):
    """Beers 2018's image + segmentation channels: every colour operation (the RGB ones for
    the fundus) at p = 1 changes the image channels and leaves each label channel as it was."""
    pipe = AugmentPipe(channels)
    labels = [i for i, c in enumerate(channels) if c in ("vessels", "edema", "necrosis",
                                                         "enhancing")]
    images = [i for i in range(len(channels)) if i not in labels]
    x = torch.rand(3, len(channels), 8, 8)
    params = pipe.draw(3, 1.0, lambda *s, like: torch.rand(*s, generator=torch.Generator()
                                                            .manual_seed(1)), x)
    for key in GEOMETRIC:
        params[key] = torch.zeros_like(params[key])
    out = pipe.apply(x, params)
    assert torch.equal(out[:, labels], x[:, labels])
    assert all(not torch.equal(out[:, i], x[:, i]) for i in images)


def test_stylegan2_ada_trains_on_beers_brats_channels(tmp_path, monkeypatch):
    """A tiny StyleGAN2 + ADA (p = 1 throughout) on 4 sequences + 3 label channels: a few steps
    train, the samples have the 7 channels, and the augmentation kept every label channel of
    the real batches a geometric transform of itself (binary maps stay in [0, 1])."""
    import numpy as np

    from medgan.data.prepared import PreparedDatasetWriter
    from medgan.training import train_gan

    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 7, 16, 16)).astype(np.float32)
    images[:, 4:] = (rng.random((8, 3, 16, 16)) < 0.3).astype(np.float32)
    with PreparedDatasetWriter(tmp_path / "data", channels=BEERS_BRATS, resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "slice": i} for i in range(8)])
    seen = []
    real_augment = AdaptiveAugment.augment

    def recording_augment(self, x, rand):
        out = real_augment(self, x, rand)
        seen.append((self.p, x.detach().clone(), out.detach().clone()))
        return out

    args = {**ARGS, "loss": {**ARGS["loss"], "ada": {"interval": 100, "initial_p": 1.0}}}
    monkeypatch.setattr(AdaptiveAugment, "augment", recording_augment)
    run = train_gan(tmp_path / "data", tmp_path / "run",
                    **{**args, "schedule": {**SCHEDULE, "steps": 3}})
    assert run["config"]["channels"] == BEERS_BRATS
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["step"] == 3 and ckpt["loss_state"]["ada"]["p"] == 1.0
    assert len(seen) == 3 * 3  # real and fake in each D step, fake in each G step
    reals = [(x, out) for _, x, out in seen if set(x[:, 4:].unique().tolist()) <= {0.0, 1.0}]
    assert reals and all(out.shape == x.shape == (4, 7, 16, 16) for x, out in reals)
    for x, out in reals:  # labels only resampled: within [0, 1], never brightened or scaled
        assert out[:, 4:].min() >= -1e-5 and out[:, 4:].max() <= 1 + 1e-5
        assert not torch.equal(out[:, :4], x[:, :4])
