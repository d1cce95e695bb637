"""FID, KID, precision/recall and density/coverage on feature vectors."""

import numpy as np
import pytest
import scipy.linalg

from medgan.analysis.metrics.distribution import (
    density_coverage,
    feature_metrics,
    frechet_distance,
    kernel_inception_distance,
    knn_radii,
    precision_recall,
)


def _with_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """n samples whose sample mean and (ddof 1) covariance equal ``mean`` and ``cov`` exactly."""
    z = np.random.default_rng(seed).normal(size=(n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return z @ np.linalg.cholesky(cov).T + mean


def _closed_form(mu1, cov1, mu2, cov2) -> float:
    root = scipy.linalg.sqrtm(cov1 @ cov2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * root))


def test_fid_of_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fid_equals_closed_form_for_known_moments():
    rng = np.random.default_rng(1)
    d = 6
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    x, y = _with_moments(50, mu1, cov1, 2), _with_moments(70, mu2, cov2, 3)
    expected = _closed_form(mu1, cov1, mu2, cov2)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(y, x) == pytest.approx(expected, rel=1e-6)


def test_fid_handles_singular_covariance():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 20)), rng.normal(size=(8, 20)) + 1
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    naive = _closed_form(x.mean(axis=0), cov_x, y.mean(axis=0), cov_y)
    assert frechet_distance(x, y) == pytest.approx(naive, rel=1e-6)


def test_kid_is_about_zero_for_one_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same = kernel_inception_distance(x, y, subsets=20, subset_size=100)
    shifted = kernel_inception_distance(x, y + 0.5, subsets=20, subset_size=100)
    assert abs(same["kid_mean"]) < 3 * same["kid_std"] / np.sqrt(20) + 1e-3
    assert shifted["kid_mean"] > 10 * abs(same["kid_mean"]) and shifted["kid_mean"] > 0.05
    assert kernel_inception_distance(x, y, subsets=5, subset_size=50, seed=7) == \
        kernel_inception_distance(x, y, subsets=5, subset_size=50, seed=7)


def test_kid_subset_size_is_capped_by_the_smaller_set():
    rng = np.random.default_rng(5)
    out = kernel_inception_distance(rng.normal(size=(30, 4)), rng.normal(size=(10, 4)),
                                    subsets=3, subset_size=1000)
    assert np.isfinite(out["kid_mean"])


def test_knn_radii_are_exact():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(knn_radii(x, 1), [1, 1, 2, 4])
    np.testing.assert_allclose(knn_radii(x, 2), [3, 2, 3, 6])


def test_same_distribution_gives_high_precision_recall_density_coverage():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(500, 4)), rng.normal(size=(500, 4))
    pr, dc = precision_recall(x, y), density_coverage(x, y)
    assert pr["precision"] > 0.85 and pr["recall"] > 0.85
    assert 0.8 < dc["density"] < 1.2 and dc["coverage"] > 0.85


def test_far_away_fake_has_no_precision_and_no_coverage():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 50
    pr, dc = precision_recall(x, y), density_coverage(x, y)
    assert pr == {"precision": 0.0, "recall": 0.0}
    assert dc == {"density": 0.0, "coverage": 0.0}


def test_fake_on_one_real_mode_is_precise_but_misses_the_rest():
    rng = np.random.default_rng(8)
    centres = np.array([[0, 0], [20, 0], [0, 20], [20, 20]], float)
    x = np.concatenate([c + rng.normal(size=(150, 2)) for c in centres])
    y = centres[0] + rng.normal(size=(300, 2))
    pr, dc = precision_recall(x, y), density_coverage(x, y)
    assert pr["precision"] > 0.85 and pr["recall"] < 0.3
    assert dc["coverage"] < 0.3


def test_feature_metrics_keys_and_validation():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(60, 5)), rng.normal(size=(50, 5))
    out = feature_metrics(x, y, kid_subsets=4, kid_subset_size=20)
    assert list(out) == ["domain_fid", "domain_kid_mean", "domain_kid_std", "domain_n_real",
                         "domain_n_fake", "domain_precision", "domain_precision_lo",
                         "domain_precision_hi", "domain_recall", "domain_recall_lo",
                         "domain_recall_hi", "domain_coverage", "domain_coverage_lo",
                         "domain_coverage_hi", "domain_density", "domain_density_lo",
                         "domain_density_hi"]
    pr, dc = precision_recall(x, y), density_coverage(x, y)
    for key, value in {**pr, **dc}.items():
        assert out[f"domain_{key}"] == value
        assert out[f"domain_{key}_lo"] <= value <= out[f"domain_{key}_hi"]
    assert (out["domain_n_real"], out["domain_n_fake"]) == (60, 50)
    assert out == feature_metrics(x, y, kid_subsets=4, kid_subset_size=20)
    with pytest.raises(ValueError, match="dimension"):
        frechet_distance(x, y[:, :4])
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(x, y[:1])
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(x, np.full((5, 5), np.nan))
    with pytest.raises(ValueError, match="more than 5"):
        density_coverage(x[:5], y)
    with pytest.raises(ValueError, match="2-D"):
        precision_recall(x[None], y)


# --- standard FID with a local Inception-v3 file -----------------------------------------------
# The real detector (NVlabs' TorchScript inception-2015-12-05.pt) cannot exist here (no network,
# no downloads), so these tests script a tiny stand-in with the same call signature: uint8
# (N, 3, H, W) in [0, 255] of any size in, (N, 2048) features out.

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812

from medgan.analysis.metrics.inception import (  # noqa: E402
    inception_features,
    inception_fid,
    load_inception,
    to_uint8,
)
from medgan.errors import InputError  # noqa: E402


class _StandInDetector(torch.nn.Module):
    def __init__(self, dim: int = 2048):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 16, dim)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert img.dtype == torch.uint8
        x = F.interpolate(img.to(torch.float32), size=[4, 4], mode="bilinear",
                          align_corners=False)
        return torch.tanh(self.proj((x - 128.0).flatten(1) / 128.0))


def _script(path, dim: int = 2048):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = torch.jit.script(_StandInDetector(dim))
    torch.jit.save(module, str(path))
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return load_inception(_script(tmp_path_factory.mktemp("inception") / "inception.pt"))


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_load_inception_refuses_missing_wrong_and_non_torchscript_files(tmp_path):
    with pytest.raises(InputError, match="absent.pt.*not found"):
        load_inception(tmp_path / "absent.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(2)}, plain)
    with pytest.raises(InputError, match="plain.pt.*TorchScript"):
        load_inception(plain)
    with pytest.raises(InputError, match="small.pt.*expected \\(2, 2048\\)"):
        load_inception(_script(tmp_path / "small.pt", dim=16))


def test_windows_map_to_uint8():
    images = np.array([[[[-1.0, 0.0, 1.0, 5.0]]]], np.float32)
    np.testing.assert_array_equal(to_uint8(images, [(-1.0, 1.0)]), [[[[0, 128, 255, 255]]]])


def test_inception_features_per_channel_or_rgb(detector):
    rng = np.random.default_rng(10)
    images = rng.normal(size=(5, 3, 24, 24)).astype(np.float32)
    windows = [(-3, 3)] * 3
    per = inception_features(detector, images, windows, channel_names=["a", "b", "c"],
                             batch_size=2)
    assert list(per) == ["a", "b", "c"] and per["a"].shape == (5, 2048)
    rgb = inception_features(detector, images, windows, rgb_channels=[2, 1, 0])
    assert list(rgb) == ["rgb"] and rgb["rgb"].shape == (5, 2048)
    assert not np.allclose(rgb["rgb"], per["a"])
    with pytest.raises(ValueError, match="window"):
        inception_features(detector, images, windows[:2])
    with pytest.raises(ValueError, match="rgb_channels"):
        inception_features(detector, images, windows, rgb_channels=[0, 1, 3])


def test_inception_fid_keys_and_values(detector):
    rng = np.random.default_rng(11)
    real = rng.normal(size=(40, 2, 16, 16)).astype(np.float32)
    fake = real + np.array([0.0, 1.5], np.float32).reshape(1, 2, 1, 1)
    out = inception_fid(detector, real, fake, [(-3, 3), (-3, 3)], ["T1", "T2"])
    assert set(out) == {"fid_inception_T1", "fid_inception_T2", "fid_inception"}
    assert out["fid_inception_T1"] == pytest.approx(0.0, abs=1e-6)
    assert out["fid_inception_T2"] > 1e-3
    assert out["fid_inception"] == pytest.approx(out["fid_inception_T2"] / 2)


def test_domain_precision_and_density_use_the_larger_synthetic_set():
    from medgan.analysis.metrics import MetricInputs, compute_metrics
    from medgan.analysis.metrics.distribution import manifold_intervals

    rng = np.random.default_rng(0)
    real, few, many = rng.normal(size=(60, 4)), rng.normal(size=(20, 4)), rng.normal(size=(400, 4))
    images = np.zeros((20, 1, 4, 4), np.float32)
    inputs = dict(reference=images, candidate=images, heldout=images, channel_names=["T1"],
                  data_range=1.0, settings={"bootstrap": 50, "kid_subset_size": 20},
                  reference_features=real, candidate_features=few)
    plain = compute_metrics(MetricInputs(**inputs), ["domain"])
    both = compute_metrics(MetricInputs(**inputs, precision_candidate_features=many), ["domain"])
    big = manifold_intervals(real, many, n_boot=50)
    assert both["domain_precision"] == big["precision"] and both["domain_n_fake_precision"] == 400
    assert both["domain_density"] == big["density"]
    assert both["domain_precision_hi"] - both["domain_precision_lo"] < \
        plain["domain_precision_hi"] - plain["domain_precision_lo"]
    assert both["domain_fid"] == plain["domain_fid"]  # at N = 20, the scored set
    off = compute_metrics(MetricInputs(**{**inputs, "settings": {**inputs["settings"],
                                                                 "matched_subsets": 0}},
                                       precision_candidate_features=many), ["domain"])
    for key in ("domain_recall", "domain_coverage"):  # the scored set's own without subsets
        assert off[key] == plain[key]
    assert both["domain_matched_subsets"] == 100 and "domain_matched_subsets" not in off


def test_matched_recall_coverage_is_the_mean_over_subsets_of_n():
    """Recall and coverage at N = 20 from a pool of 400: the mean of the plain metrics over
    the same random subsets, with a narrower spread than one set of 20 has."""
    from medgan.analysis.metrics.distribution import (
        density_coverage,
        matched_recall_coverage,
        precision_recall,
    )

    rng = np.random.default_rng(1)
    real, pool = rng.normal(size=(60, 4)), rng.normal(size=(400, 4))
    got = matched_recall_coverage(real, pool, 20, subsets=30, seed=7)
    pick_rng = np.random.default_rng(7)
    picks = [np.sort(pick_rng.choice(400, size=20, replace=False)) for _ in range(30)]
    recall = [precision_recall(real, pool[p], k=3)["recall"] for p in picks]
    coverage = [density_coverage(real, pool[p], k=5)["coverage"] for p in picks]
    assert got["recall"] == pytest.approx(np.mean(recall))
    assert got["coverage"] == pytest.approx(np.mean(coverage))
    assert got["coverage_subset_sd"] == pytest.approx(np.std(coverage, ddof=1))
    assert got["coverage_lo"] < got["coverage"] < got["coverage_hi"]
    width = got["coverage_hi"] - got["coverage_lo"]
    assert width < 2 * got["coverage_subset_sd"]  # the mean's interval, not one set's spread
    with pytest.raises(ValueError, match="pool"):
        matched_recall_coverage(real, pool[:10], 20)


def test_knn_radii_across_groups_skip_the_vectors_own_group():
    x = np.array([[0.0], [0.1], [3.0], [3.2], [7.0]])
    groups = np.array(["a", "a", "b", "b", "c"])
    np.testing.assert_allclose(knn_radii(x, 1, groups), [3.0, 2.9, 2.9, 3.1, 3.8])
    np.testing.assert_allclose(knn_radii(x, 2, groups), [3.2, 3.1, 3.0, 3.2, 4.0])
    with pytest.raises(ValueError, match="one label per feature vector"):
        knn_radii(x, 1, groups[:4])
    with pytest.raises(ValueError, match="fewer than 4 vectors outside"):
        knn_radii(x, 4, groups)


def test_usable_groups_need_k_vectors_outside_every_group():
    from medgan.analysis.metrics.distribution import usable_groups

    groups = np.array(["a", "a", "a", "b", "b"])
    assert usable_groups(groups, 5, 2) is groups
    assert usable_groups(groups, 5, 3) is None  # "a"'s vectors have only 2 outside
    assert usable_groups(np.array(["a"] * 5), 5, 1) is None
    assert usable_groups(None, 5, 1) is None


def _patients(rng, n_patients: int, slices: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Each patient a random centre with ``slices`` near-copies of it (adjacent slices)."""
    centres = rng.normal(size=(n_patients, 4))
    x = np.repeat(centres, slices, axis=0) + spread * rng.normal(size=(n_patients * slices, 4))
    return x, np.repeat(np.arange(n_patients), slices)


def test_precision_across_patients_sees_new_patients_of_the_same_distribution():
    """Reference and held-out: patients of one distribution, each a tight cluster of slices.
    Radii over all slices shrink to a patient's own cluster and new patients fall outside
    (low real-vs-real precision); across patients they measure the spread between patients
    and new patients lie inside, while far-away vectors stay outside either way."""
    rng = np.random.default_rng(3)
    ref, ref_groups = _patients(rng, 20, 10, 0.01)
    new, _ = _patients(rng, 10, 10, 0.01)
    plain = precision_recall(ref, new, k=3)["precision"]
    across = precision_recall(ref, new, k=3, real_groups=ref_groups)["precision"]
    assert plain < 0.2 < 0.6 < across
    far = new + 10.0
    assert precision_recall(ref, far, k=3, real_groups=ref_groups)["precision"] == 0.0
    assert density_coverage(ref, far, k=5, real_groups=ref_groups)["coverage"] == 0.0
    cover = density_coverage(ref, new, k=5, real_groups=ref_groups)["coverage"]
    assert cover > density_coverage(ref, new, k=5)["coverage"]


def test_domain_metric_uses_the_reference_patients_unless_switched_off():
    from medgan.analysis.metrics import MetricInputs, compute_metrics

    rng = np.random.default_rng(4)
    ref, ref_groups = _patients(rng, 12, 6, 0.01)
    new, new_groups = _patients(rng, 5, 6, 0.01)
    images = np.zeros((30, 1, 4, 4), np.float32)
    inputs = dict(reference=images, candidate=images, heldout=images, channel_names=["T1"],
                  data_range=1.0, settings={"bootstrap": 50, "kid_subset_size": 20},
                  reference_features=ref, candidate_features=new,
                  reference_groups=ref_groups, candidate_groups=new_groups)
    on = compute_metrics(MetricInputs(**inputs), ["domain"])
    off = compute_metrics(MetricInputs(**{**inputs, "settings": {
        **inputs["settings"], "knn_across_groups": False}}), ["domain"])
    one = compute_metrics(MetricInputs(**{**inputs, "reference_groups": np.zeros(72)}),
                          ["domain"])
    assert on["domain_knn_across_groups"] == 1.0 and off["domain_knn_across_groups"] == 0.0
    assert on["domain_precision"] > off["domain_precision"]
    assert on["domain_recall"] == off["domain_recall"]  # the candidates' radii: all images
    assert one["domain_knn_across_groups"] == 0.0  # one patient: radii over all images
    assert one["domain_precision"] == off["domain_precision"]
