"""Tests of the fundus reader, segmenter preprocessing, laterality, phantoms and prepare_fundus."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medgan.data.phantoms.fundus import fundus_phantom, make_fundus_phantoms
from medgan.data.prepared import load_prepared
from medgan.data.preprocess.fundus import prepare_fundus
from medgan.data.preprocess.fundus_image import (
    estimate_fov,
    estimate_laterality,
    fit_to_square,
    load_fundus_sample,
    locate_optic_disc,
    preprocess_for_vessel_segmentation,
)
from medgan.data.readers.fundus import (
    PHANTOM_TRUTH_FILE,
    discover_fundus_images,
    leading_id,
    parse_laterality,
    read_fundus_image,
    read_fundus_mask,
    read_fundus_record,
)
from medgan.data.vessels import save_vessel_unet
from medgan.errors import InputError

N_PHANTOMS, SIZE = 4, 96
PREP = {"gamma": 1.2, "clahe_clip": 2.0 / 256, "clahe_kernel": None}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("fundus") / "phantoms"
    make_fundus_phantoms(root, n_images=N_PHANTOMS, size=SIZE, seed=0)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained tiny U-net (the tests of prepare_fundus check the format, not accuracy)."""
    import torch

    from medgan.models.unet import build_unet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("unet") / "unet.pt"
    save_vessel_unet(path, build_unet({"width": 4, "depth": 1}).eval(),
                     preprocessing={"resolution": 64, **PREP})
    return path


def _copy(phantoms, tmp_path):
    root = tmp_path / "release"
    shutil.copytree(phantoms, root)
    return root


# --- phantoms ------------------------------------------------------------------------


def test_phantom_layout_and_determinism(phantoms, tmp_path):
    names = sorted(p.name for p in (phantoms / "images").iterdir())
    assert names == [f"{21 + i}_training.tif" for i in range(N_PHANTOMS)]
    assert sorted(p.name for p in (phantoms / "1st_manual").iterdir())[0] == "21_manual1.gif"
    assert sorted(p.name for p in (phantoms / "mask").iterdir())[0] == "21_training_mask.gif"
    again = tmp_path / "again"
    make_fundus_phantoms(again, n_images=2, size=SIZE, seed=0)
    for sub in ("images/21_training.tif", "1st_manual/22_manual1.gif"):
        assert (again / sub).read_bytes() == (phantoms / sub).read_bytes()
    other = fundus_phantom(size=SIZE, side="R", rng=np.random.default_rng([1, 0]))
    first = np.asarray(Image.open(phantoms / "images/21_training.tif"))
    assert first.shape == (SIZE, round(SIZE * 565 / 584), 3)
    assert not np.array_equal(other["image"], first)


def test_phantom_content(phantoms):
    truth = pd.read_csv(phantoms / PHANTOM_TRUTH_FILE, sep="\t")
    assert list(truth["laterality"]) == ["R", "L", "R", "L"]
    for _, row in truth.iterrows():
        key = row["image"].split("_")[0]
        image = read_fundus_image(phantoms / "images" / row["image"])
        vessels = read_fundus_mask(phantoms / f"1st_manual/{key}_manual1.gif")
        fov = read_fundus_mask(phantoms / f"mask/{key}_training_mask.gif")
        assert 0.03 < vessels[fov].mean() < 0.3 and not vessels[~fov].any()
        red, green = image[..., 0][fov & ~vessels].mean(), image[..., 1][fov & ~vessels].mean()
        assert red > green  # orange background
        assert image[..., 1][vessels].mean() < 0.8 * green  # vessels darker
        assert image[~fov].max() < 0.1  # black outside the field of view
        # disc bright and on the recorded side, macula darker than the fundus around it
        rows, cols = np.mgrid[0:fov.shape[0], 0:fov.shape[1]]
        in_disc = np.hypot(rows - row["disc_row"], cols - row["disc_col"]) < row["disc_radius"]
        assert image[in_disc & ~vessels].mean() > image[fov & ~in_disc].mean() + 0.15
        side = "R" if row["disc_col"] > image.shape[1] / 2 else "L"
        assert side == row["laterality"]
        mr, mc = int(row["macula_row"]), int(row["macula_col"])
        assert image[mr - 1:mr + 2, mc - 1:mc + 2].mean() < image[fov & ~vessels].mean()


# --- reader --------------------------------------------------------------------------


def test_reader_pairs_drive_layout(phantoms):
    records = discover_fundus_images(phantoms)
    assert [r.image_id for r in records] == ["21", "22", "23", "24"]
    for r in records:
        assert r.vessels.name == f"{r.image_id}_manual1.gif"
        assert r.fov.name == f"{r.image_id}_training_mask.gif"
        assert r.laterality_source == "phantom"
    data = read_fundus_record(records[0])
    assert data["image"].dtype == np.float32 and data["image"].shape[2] == 3
    assert 0 <= data["image"].min() and data["image"].max() <= 1
    assert data["vessels"].dtype == bool and data["vessels"].shape == data["image"].shape[:2]
    assert leading_id("21_training_mask.gif") == "21"


def test_reader_flat_folder_and_optional_masks(phantoms, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("a_OD.png", "a_OS.png"):  # shared leading id, no masks: whole stems
        Image.fromarray(np.full((20, 20, 3), 100, np.uint8)).save(flat / name)
    (flat / "notes.txt").write_text("ignored")
    records = discover_fundus_images(flat)
    assert [r.image_id for r in records] == ["a_OD", "a_OS"]
    assert records[0].vessels is None and records[0].fov is None
    assert records[0].laterality is None

    root = _copy(phantoms, tmp_path)
    shutil.rmtree(root / "mask")
    (root / "1st_manual/22_manual1.gif").unlink()
    records = discover_fundus_images(root)
    assert records[1].vessels is None and records[0].fov is None
    sample = load_fundus_sample(records[0], resolution=64)
    assert sample.fov_source == "estimated" and sample.fov.shape == (64, 64)
    with pytest.raises(InputError, match="22_training.tif: no manual vessel mask"):
        discover_fundus_images(root, require_vessels=True)


def test_laterality_table_forms(phantoms, tmp_path):
    table = tmp_path / "eyes.csv"
    table.write_text("image,laterality\n21_training.tif,left\n22_training,OD\n23,r\n24,\n")
    records = discover_fundus_images(phantoms, laterality_table=table)
    assert [r.laterality for r in records] == ["L", "R", "R", None]
    assert [r.laterality_source for r in records] == ["table", "table", "table", None]
    assert parse_laterality(" OS ") == "L"


def test_estimate_fov_matches_the_mask(phantoms):
    for record in discover_fundus_images(phantoms):
        data = read_fundus_record(record)
        est = estimate_fov(data["image"])
        assert (est & data["fov"]).sum() / (est | data["fov"]).sum() > 0.95


# --- preprocessing -------------------------------------------------------------------


def test_preprocessing_range_and_fov(phantoms):
    record = discover_fundus_images(phantoms)[0]
    sample = load_fundus_sample(record, resolution=64)
    assert sample.image.shape == (64, 64, 3) and sample.fov.dtype == bool
    out = preprocess_for_vessel_segmentation(sample.image, sample.fov, **PREP)
    assert out.dtype == np.float32 and out.shape == (64, 64)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(out[~sample.fov] == 0.0)
    inside = out[sample.fov]
    assert inside.max() > 0.9 and inside.std() > 0.1  # contrast stretched by CLAHE
    # vessels are dark in the segmenter input
    assert out[sample.vessels].mean() < inside.mean()
    brighter = preprocess_for_vessel_segmentation(sample.image, sample.fov, gamma=2.0)
    assert brighter[sample.fov].mean() > inside.mean()
    flat = preprocess_for_vessel_segmentation(np.full((32, 32, 3), 0.5, np.float32))
    assert np.all(flat == 0)


def test_fit_to_square_aspects():
    img = np.zeros((40, 20, 3), np.float32)
    img[:, :, 0] = 1.0
    stretched = fit_to_square(img, 16)
    padded = fit_to_square(img, 16, aspect="pad")
    assert stretched.shape == padded.shape == (16, 16, 3)
    assert stretched[..., 0].min() > 0.99
    assert padded[8, 0, 0] < 0.01 and padded[8, 8, 0] > 0.99  # black bars left and right
    mask = fit_to_square(np.ones((40, 20), bool), 16, mask=True)
    assert mask.dtype == bool and mask.all()
    with pytest.raises(ValueError, match="aspect"):
        fit_to_square(img, 16, aspect="crop")


# --- laterality ----------------------------------------------------------------------


def test_laterality_estimator_on_phantoms(phantoms):
    truth = pd.read_csv(phantoms / PHANTOM_TRUTH_FILE, sep="\t").set_index("image")
    for record in discover_fundus_images(phantoms):
        data = read_fundus_record(record)
        side, confidence = estimate_laterality(data["image"], data["fov"])
        row = truth.loc[record.image.name]
        assert side == row["laterality"] == record.laterality
        assert 0.3 < confidence <= 1.0
        disc = locate_optic_disc(data["image"], data["fov"], vessels=data["vessels"])
        assert np.hypot(disc.row - row["disc_row"], disc.col - row["disc_col"]) \
            < 1.5 * row["disc_radius"]


def test_laterality_of_a_mirrored_photo_flips(phantoms):
    data = read_fundus_record(discover_fundus_images(phantoms)[0])
    side, _ = estimate_laterality(data["image"], data["fov"])
    mirrored, _ = estimate_laterality(data["image"][:, ::-1], data["fov"][:, ::-1])
    assert {side, mirrored} == {"L", "R"}


# --- prepare_fundus ------------------------------------------------------------------


def test_prepare_fundus_output(phantoms, checkpoint, tmp_path):
    out = tmp_path / "prepared"
    info = prepare_fundus(phantoms, out, unet_checkpoint=checkpoint, resolution=64, **PREP,
                          provenance={"dataset": "fundus_phantom"})
    ds = load_prepared(out)
    assert ds.images.shape == (N_PHANTOMS, 4, 64, 64)
    assert ds.channels == ["R", "G", "B", "vessels"]
    assert ds.images.min() >= -1.0 and ds.images.max() <= 1.0
    assert info["kind"] == "fundus" and info["dataset"] == "fundus_phantom"
    assert info["laterality_sources"] == {"table": 0, "phantom": N_PHANTOMS, "estimated": 0}
    meta = ds.meta
    assert list(meta["image"].astype(str)) == ["21", "22", "23", "24"]
    assert list(meta["laterality"]) == ["R", "L", "R", "L"]
    assert set(meta["laterality_source"]) == {"phantom"}
    assert {"source", "disc_row", "disc_col", "laterality_estimated", "laterality_confidence",
            "fov_source", "vessel_auc"} <= set(meta.columns)
    assert meta["vessel_auc"].notna().all()
    assert json.loads((out / "dataset.json").read_text())["patch_size"] == 48


def test_vessel_threshold_gives_binary_maps(phantoms, checkpoint, tmp_path):
    """qtim_ROP's prepare_GAN.py: the GAN's vessel maps are the segmentations > 0.4, binary."""
    prepare_fundus(phantoms, tmp_path / "p", unet_checkpoint=checkpoint, resolution=64, **PREP)
    info = prepare_fundus(phantoms, tmp_path / "b", unet_checkpoint=checkpoint, resolution=64,
                          vessel_threshold=0.4, **PREP)
    prob = (load_prepared(tmp_path / "p").images[:, 3] + 1) / 2
    binary = load_prepared(tmp_path / "b").images[:, 3]
    np.testing.assert_array_equal(binary, np.where(prob > 0.4, 1.0, -1.0))
    np.testing.assert_array_equal(load_prepared(tmp_path / "b").images[:, :3],
                                  load_prepared(tmp_path / "p").images[:, :3])
    assert "0.4" in info["vessel_scaling"]
    with pytest.raises(ValueError, match="vessel_threshold"):
        prepare_fundus(phantoms, tmp_path / "c", unet_checkpoint=checkpoint, resolution=64,
                       vessel_threshold=1.5, **PREP)


def test_prepare_fundus_laterality_sources(phantoms, checkpoint, tmp_path):
    root = _copy(phantoms, tmp_path)
    table = tmp_path / "eyes.tsv"
    table.write_text("image\tlaterality\n21\tL\n")
    prepare_fundus(root, tmp_path / "a", unet_checkpoint=checkpoint, resolution=64,
                   laterality_table=table)
    meta = load_prepared(tmp_path / "a").meta
    assert list(meta["laterality_source"]) == ["table", "estimated", "estimated", "estimated"]
    assert meta["laterality"][0] == "L"  # the table wins over the estimate
    (root / PHANTOM_TRUTH_FILE).unlink()
    prepare_fundus(root, tmp_path / "b", unet_checkpoint=checkpoint, resolution=64)
    meta = load_prepared(tmp_path / "b").meta
    assert set(meta["laterality_source"]) == {"estimated"}
    assert list(meta["laterality"]) == ["R", "L", "R", "L"]


def test_prepare_fundus_flat_folder_of_jpegs(phantoms, checkpoint, tmp_path):
    flat = tmp_path / "photos"
    flat.mkdir()
    for path in sorted((phantoms / "images").iterdir())[:2]:
        Image.open(path).save(flat / f"eye_{path.stem}.jpg", quality=95)
    prepare_fundus(flat, tmp_path / "out", unet_checkpoint=checkpoint, resolution=64,
                   aspect="pad")
    ds = load_prepared(tmp_path / "out")
    assert ds.images.shape == (2, 4, 64, 64)
    assert list(ds.meta["image"]) == ["eye_21_training", "eye_22_training"]
    assert list(ds.meta["laterality"]) == ["R", "L"]
    assert set(ds.meta["fov_source"]) == {"estimated"}
    assert ds.meta["vessel_auc"].isna().all()
    assert ds.info["aspect"] == "pad"


# --- malformed input -----------------------------------------------------------------


def _gif(path, array):
    Image.fromarray(array.astype(np.uint8), "L").save(path)


def _not_an_image(root, tmp_path):
    (root / "images/22_training.tif").write_text("this is not a TIFF\n")
    return None, "22_training.tif: not a readable image"


def _mask_size(root, tmp_path):
    _gif(root / "1st_manual/23_manual1.gif", np.zeros((10, 10)))
    return None, "23_manual1.gif: mask size 10x10 differs from its image's"


def _empty_folder(root, tmp_path):
    for sub in root.iterdir():
        shutil.rmtree(sub) if sub.is_dir() else sub.unlink()
    return None, "release: has no fundus images"


def _unknown_table_image(root, tmp_path):
    table = tmp_path / "eyes.csv"
    table.write_text("image,laterality\n21,L\n99_training.tif,R\n")
    return table, "eyes.csv: line 3: image '99_training.tif' matches no image"


def _bad_laterality(root, tmp_path):
    table = tmp_path / "eyes.csv"
    table.write_text("image,laterality\n21,up\n")
    return table, "eyes.csv: line 2: laterality 'up' is not one of L, R"


def _table_columns(root, tmp_path):
    table = tmp_path / "eyes.tsv"
    table.write_text("file\teye\n21\tL\n")
    return table, "eyes.tsv: the laterality table lacks column(s) ['image', 'laterality']"


def _orphan_mask(root, tmp_path):
    _gif(root / "mask/77_training_mask.gif", np.zeros((SIZE, SIZE)))
    return None, "77_training_mask.gif: field-of-view mask file whose id '77' matches no image"


def _black_photo_without_fov(root, tmp_path):
    shape = np.asarray(Image.open(root / "images/24_training.tif")).shape
    Image.fromarray(np.zeros(shape, np.uint8)).save(root / "images/24_training.tif")
    (root / "mask/24_training_mask.gif").unlink()
    return None, "24_training.tif: no field of view found"


def _empty_fov_mask(root, tmp_path):
    shape = np.asarray(Image.open(root / "images/21_training.tif")).shape[:2]
    _gif(root / "mask/21_training_mask.gif", np.zeros(shape))
    return None, "21_training_mask.gif: field-of-view mask is empty"


@pytest.mark.parametrize("corrupt", [_not_an_image, _mask_size, _empty_folder,
                                     _unknown_table_image, _bad_laterality, _table_columns,
                                     _orphan_mask, _black_photo_without_fov, _empty_fov_mask])
def test_malformed_input_gives_one_line_error_and_no_output(corrupt, phantoms, checkpoint,
                                                            tmp_path):
    root = _copy(phantoms, tmp_path)
    table, message = corrupt(root, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        prepare_fundus(root, out, unet_checkpoint=checkpoint, resolution=64,
                       laterality_table=table)
    text = str(info.value)
    assert "\n" not in text
    assert message in text, text
    assert not out.exists() or not any(out.iterdir())


def test_checkpoint_with_other_preprocessing_is_refused(phantoms, checkpoint, tmp_path):
    with pytest.raises(InputError, match=r"unet\.pt: the U-net was trained with other "
                                         r"preprocessing.*gamma: \(2\.0, 1\.2\)"):
        prepare_fundus(phantoms, tmp_path / "out", unet_checkpoint=checkpoint, resolution=64,
                       gamma=2.0)
    not_unet = tmp_path / "other.pt"
    from medgan.training.checkpoint import save_checkpoint

    save_checkpoint(not_unet, {"generator": {}, "config": {}, "step": 0})
    with pytest.raises(InputError, match="other.pt: checkpoint lacks key"):
        prepare_fundus(phantoms, tmp_path / "out", unet_checkpoint=not_unet, resolution=64)
    assert not (tmp_path / "out").exists()
