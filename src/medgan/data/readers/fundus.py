"""Retinal fundus photographs: discovering a folder of photos and reading one photo and its masks.

Two layouts are recognised under a root folder:

* DRIVE's (Staal et al. 2004): ``images/`` holds the photos (``21_training.tif``), and the
  optional folders ``1st_manual/`` the manual vessel masks (``21_manual1.gif``) and ``mask/``
  the field-of-view masks (``21_training_mask.gif``);
* a plain folder of photos (anything without an ``images/`` subfolder), without masks.

Photos may be TIFF, JPEG, PNG, GIF or BMP; masks any of those (non-zero above half the mask's
maximum = inside). Files are paired by their *leading id*, the part of the file name before the
first ``_`` (``21_training.tif`` <-> ``21_manual1.gif`` <-> ``21_training_mask.gif``). When
two photos share a leading id and there are no mask folders, each photo's id is its whole file
stem instead.

Laterality (which eye) can come from a table, CSV or TSV, with the columns ``image`` (a file
name, file stem or id) and ``laterality`` (``L``/``R``, ``left``/``right`` or ``OS``/``OD``,
any case; an empty cell means unknown). A phantom release (:mod:`medgan.data.phantoms.fundus`)
carries its ground truth in ``phantom_truth.tsv`` beside ``images/``, in the same format; it is
used when no table is given and reported as laterality source ``"phantom"``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgan.errors import InputError

IMAGES_DIR = "images"
VESSELS_DIR = "1st_manual"
FOV_DIR = "mask"
PHANTOM_TRUTH_FILE = "phantom_truth.tsv"
IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".gif", ".bmp")
LATERALITY_WORDS = {"l": "L", "left": "L", "os": "L", "r": "R", "right": "R", "od": "R"}


@dataclass(frozen=True)
class FundusRecord:
    """One photo: its id, file, optional mask files and laterality (``"L"``, ``"R"`` or None)."""

    image_id: str
    image: Path
    vessels: Path | None = None
    fov: Path | None = None
    laterality: str | None = None
    laterality_source: str | None = None  # "table" | "phantom" | None (unknown)


def leading_id(path: str | os.PathLike) -> str:
    """The part of a file name before the first ``_`` (and before the extension)."""
    stem = Path(path).name.split(".")[0]
    return stem.split("_", 1)[0]


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _masks_by_id(folder: Path, ids: set[str], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in _image_files(folder):
        key = leading_id(path)
        if key in found:
            raise InputError(path, f"two {what} files have the id {key!r} "
                                   f"({found[key].name} and {path.name})")
        if key not in ids:
            raise InputError(path, f"{what} file whose id {key!r} matches no image in "
                                   f"{folder.parent / IMAGES_DIR}")
        found[key] = path
    return found


def discover_fundus_images(root: str | os.PathLike, *,
                           laterality_table: str | os.PathLike | None = None,
                           require_vessels: bool = False) -> list[FundusRecord]:
    """The photos under ``root`` (see the module doc for layouts), sorted by file name.

    ``laterality_table`` (CSV/TSV) gives each listed image's eye; without it a phantom's
    ``phantom_truth.tsv`` is used when present. ``require_vessels`` makes a photo without a
    manual vessel mask an error. Raises :class:`~medgan.errors.InputError` naming the folder
    or file at fault: missing or empty folder, duplicate ids, a mask matching no image, table
    rows naming unknown images or giving bad laterality values.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(root, "fundus image folder not found")
    if not root.is_dir():
        raise InputError(root, "is not a folder")
    image_dir = root / IMAGES_DIR if (root / IMAGES_DIR).is_dir() else root
    images = _image_files(image_dir)
    if not images:
        raise InputError(image_dir, f"has no fundus images ({', '.join(IMAGE_SUFFIXES)})")
    vessel_dir, fov_dir = root / VESSELS_DIR, root / FOV_DIR
    has_masks = image_dir != root and (vessel_dir.is_dir() or fov_dir.is_dir())

    ids = [leading_id(p) for p in images]
    if len(set(ids)) != len(ids):
        if has_masks:
            dup = next(i for i in ids if ids.count(i) > 1)
            names = [p.name for p, i in zip(images, ids, strict=True) if i == dup]
            raise InputError(image_dir, f"images {names} share the id {dup!r}, so masks "
                                        f"cannot be paired; ids (before the first '_') must "
                                        f"be unique")
        ids = [p.name.split(".")[0] for p in images]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InputError(image_dir, f"two images have the file stem {dup!r}")

    vessels = _masks_by_id(vessel_dir, set(ids), "vessel mask") \
        if image_dir != root and vessel_dir.is_dir() else {}
    fovs = _masks_by_id(fov_dir, set(ids), "field-of-view mask") \
        if image_dir != root and fov_dir.is_dir() else {}
    if require_vessels:
        for path, key in zip(images, ids, strict=True):
            if key not in vessels:
                raise InputError(path, f"no manual vessel mask for this image in {vessel_dir}")

    laterality: dict[str, str | None] = {}
    source = None
    table = laterality_table
    if table is None and (root / PHANTOM_TRUTH_FILE).is_file():
        table, source = root / PHANTOM_TRUTH_FILE, "phantom"
    elif table is not None:
        source = "table"
    if table is not None:
        laterality = read_laterality_table(table, images=images, ids=ids)

    return [FundusRecord(image_id=key, image=path, vessels=vessels.get(key), fov=fovs.get(key),
                         laterality=laterality.get(key),
                         laterality_source=source if laterality.get(key) else None)
            for path, key in zip(images, ids, strict=True)]


def parse_laterality(value: str) -> str | None:
    """``"L"``/``"R"`` from L, R, left, right, OS, OD (any case); None for an empty value."""
    text = str(value).strip().lower()
    if text in ("", "nan", "na", "none"):
        return None
    if text not in LATERALITY_WORDS:
        raise ValueError(f"laterality {value!r} is not one of L, R, left, right, OS, OD")
    return LATERALITY_WORDS[text]


def read_laterality_table(path: str | os.PathLike, *, images: list[Path],
                          ids: list[str]) -> dict[str, str | None]:
    """Map image id -> ``"L"``/``"R"``/None from a CSV/TSV with columns ``image``, ``laterality``.

    ``images`` and ``ids`` are the known photos and their ids; a row may name an image by file
    name, file stem or id. Unknown images, bad values and conflicting duplicate rows raise
    :class:`~medgan.errors.InputError` naming the table and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "laterality table not found")
    lookup: dict[str, str] = {}
    for image, key in zip(images, ids, strict=True):
        lookup.update({image.name: key, image.name.split(".")[0]: key, key: key})
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the laterality table ({err})") from err
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        delimiter = "\t"
    elif suffix == ".csv":
        delimiter = ","
    else:
        first = text.splitlines()[0] if text else ""
        delimiter = "\t" if "\t" in first else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    if not rows:
        raise InputError(path, "the laterality table is empty")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("image", "laterality") if c not in header]
    if missing:
        raise InputError(path, f"the laterality table lacks column(s) {missing}; its header "
                               f"is {rows[0]}")
    i_image, i_side = header.index("image"), header.index("laterality")
    out: dict[str, str | None] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(i_image, i_side):
            raise InputError(path, f"line {line_no} has {len(row)} fields, expected at least "
                                   f"{max(i_image, i_side) + 1}")
        name = row[i_image].strip()
        key = lookup.get(name, lookup.get(name.split(".")[0]))
        if key is None:
            raise InputError(path, f"line {line_no}: image {name!r} matches no image in the "
                                   f"folder")
        try:
            side = parse_laterality(row[i_side])
        except ValueError as err:
            raise InputError(path, f"line {line_no}: {err}") from err
        if key in out and out[key] != side:
            raise InputError(path, f"line {line_no}: image {name!r} is listed twice with "
                                   f"different lateralities")
        out[key] = side
    return out


def _open_image(path: Path) -> np.ndarray:
    """Pixel array of an image file via Pillow (tifffile as a fallback for TIFF)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
                img = img.convert("RGBA" if "A" in img.mode else
                                  ("L" if img.mode in ("1",) else "RGB"))
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        if path.suffix.lower() in (".tif", ".tiff"):
            try:
                import tifffile

                return np.asarray(tifffile.imread(path))
            except Exception:  # noqa: BLE001 - report Pillow's error, the primary reader's
                pass
        raise InputError(path, f"not a readable image ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''})") from err
    return arr


def _to_unit(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        top = float(np.iinfo(arr.dtype).max)
        if arr.dtype.itemsize > 2:  # Pillow reads 16-bit PNGs as int32 ("I" mode)
            peak = float(arr.max()) if arr.size else 0.0
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else max(peak, 1.0)
        if arr.size and arr.min() < 0:
            raise InputError(path, "image holds negative pixel values")
        return (arr.astype(np.float32) / top).astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise InputError(path, "image holds NaN or infinite values")
        top = float(arr.max()) if arr.size else 0.0
        return arr / top if top > 1.0 else arr
    raise InputError(path, f"unsupported pixel type {arr.dtype}")


def read_fundus_image(path: str | os.PathLike) -> np.ndarray:
    """A photo as float32 RGB ``(H, W, 3)`` in [0, 1]; gray photos are replicated to 3 channels,
    an alpha channel is dropped. Unreadable files raise an InputError naming the file."""
    path = Path(path)
    arr = _open_image(path)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3]
    else:
        raise InputError(path, f"expected a gray or RGB photo, got pixel array shape {arr.shape}")
    if min(arr.shape[:2]) < 8:
        raise InputError(path, f"image of {arr.shape[1]}x{arr.shape[0]} px is too small")
    return np.ascontiguousarray(_to_unit(arr, path))


def read_fundus_mask(path: str | os.PathLike, *, shape: tuple[int, int] | None = None,
                     image: str | os.PathLike | None = None) -> np.ndarray:
    """A binary mask (vessels or field of view) as a bool ``(H, W)`` array.

    A pixel is inside when its value exceeds half the mask's maximum (so {0, 1} and {0, 255}
    masks both work; colour masks use their first channel). ``shape`` (H, W), when given, is
    the size of the mask's photo ``image``: a mask of another size raises an InputError.
    """
    path = Path(path)
    arr = _open_image(path)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise InputError(path, f"expected a 2-D mask, got pixel array shape {arr.shape}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise InputError(path, f"mask size {arr.shape[1]}x{arr.shape[0]} differs from its "
                               f"image's {shape[1]}x{shape[0]}"
                               + (f" ({Path(image).name})" if image is not None else ""))
    arr = arr.astype(np.float64)
    top = float(arr.max()) if arr.size else 0.0
    return arr > top / 2 if top > 0 else np.zeros(arr.shape, dtype=bool)


def read_fundus_record(record: FundusRecord) -> dict[str, np.ndarray | None]:
    """``{"image": (H, W, 3) float32, "vessels": bool (H, W) or None, "fov": bool or None}``."""
    image = read_fundus_image(record.image)
    shape = image.shape[:2]
    vessels = None if record.vessels is None else read_fundus_mask(
        record.vessels, shape=shape, image=record.image)
    fov = None if record.fov is None else read_fundus_mask(record.fov, shape=shape,
                                                           image=record.image)
    if fov is not None and not fov.any():
        raise InputError(record.fov, "field-of-view mask is empty")
    return {"image": image, "vessels": vessels, "fov": fov}

