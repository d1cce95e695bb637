"""Assemble and write a Visual Turing Test kit: the reader page and its answer key.

A kit is written as three files:

* the page, ``vtt_<name>.html``: one self-contained HTML file (images as base64 PNG, inline
  CSS and JavaScript, no network) that a group hands to its readers;
* ``answer_key.tsv``: one row per image - its blinded id, ``truth`` (real/synthetic), model,
  image type, set, and where it came from (held-out dataset row and subject, or latent seed
  and index); kept away from the readers;
* ``kit.json``: the kit id, settings, sets and counts, read back by the scoring.

Items are named by random tokens drawn from the kit seed; sets (one per model) are shown in
a random order and labelled only by image type, items in a random order within a set, so
neither names nor order reveal a model, a patient or the truth. The kit id is the first 12 hex
digits of the SHA-256 of the page's content, so a different selection, seed or rendering gives
a different id, and an answer file names the exact kit it answers.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medgan.studies.vtt.selection import KitBlock

KIT_FORMAT = "medgan-vtt-kit"
CLUES = ("none", "real_examples", "text")
KEY_COLUMNS = [
    "item",
    "truth",
    "model",
    "image_type",
    "set",
    "dataset",
    "dataset_index",
    "subject",
    "reuse",
    "latent_seed",
    "latent_index",
]


@dataclass
class Kit:
    """A kit in memory: ``payload`` (what the page embeds), ``key`` (the answer key) and
    ``record`` (kit.json)."""

    payload: dict[str, Any]
    key: pd.DataFrame
    record: dict[str, Any]

    @property
    def kit_id(self) -> str:
        return self.payload["kit_id"]


def png_base64(image: np.ndarray, window: tuple[float, float]) -> str:
    """One channel (H, W) as an 8-bit grey PNG, base64: ``window`` maps to 0..255, clipped."""
    from PIL import Image

    lo, hi = window
    grey = np.clip((np.asarray(image, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    buf = io.BytesIO()
    Image.fromarray(np.round(grey * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _render(image: np.ndarray, windows: Sequence[tuple[float, float]]) -> list[str]:
    return [png_base64(image[c], windows[c]) for c in range(image.shape[0])]


def _tokens(rng: np.random.Generator, n: int) -> list[str]:
    out: list[str] = []
    seen = set()
    while len(out) < n:
        tok = "i" + "".join(f"{v:02x}" for v in rng.integers(0, 256, size=4))
        if tok not in seen:
            seen.add(tok)
            out.append(tok)
    return out


def kit_id_of(payload: dict[str, Any]) -> str:
    """The id of a kit: SHA-256 of its canonical JSON (without ``kit_id``), 12 hex digits."""
    body = {k: v for k, v in payload.items() if k != "kit_id"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _second_round(second_round: dict[str, Any] | None) -> dict[str, Any] | None:
    spec = dict(second_round or {})
    clue = spec.get("clue", "none")
    if clue not in CLUES:
        raise ValueError(f"second_round.clue must be one of {CLUES}, got {clue!r}")
    if clue == "none":
        return None
    if clue == "text" and not str(spec.get("text", "")).strip():
        raise ValueError("second_round.clue 'text' needs a non-empty second_round.text")
    return {
        "clue": clue,
        "text": str(spec.get("text", "")),
        "n_examples": int(spec.get("n_examples", 3)),
    }


class _Blinder:
    """Turns blocks into shuffled sets of blinded items; collects the page's items and the key."""

    def __init__(self, blocks: Sequence[KitBlock], rng: np.random.Generator) -> None:
        self.rng = rng
        self.tokens = _tokens(rng, sum(len(b.real) + len(b.synthetic) for b in blocks))
        self.items: dict[str, Any] = {}
        self.key_rows: list[dict[str, Any]] = []

    def add(self, block: KitBlock, set_no: int) -> list[str]:
        """The items of one block in a random order, each under a fresh token."""
        entries = [
            ("real", img, info) for img, info in zip(block.real, block.real_info, strict=True)
        ]
        entries += [
            ("synthetic", img, info)
            for img, info in zip(block.synthetic, block.synthetic_info, strict=True)
        ]
        ids = []
        for k in self.rng.permutation(len(entries)):
            truth, img, info = entries[int(k)]
            item = self.tokens.pop()
            ids.append(item)
            self.items[item] = {"png": _render(img, block.windows)}
            self.key_rows.append(
                {
                    "item": item,
                    "truth": truth,
                    "model": block.model,
                    "image_type": block.image_type,
                    "set": set_no,
                    **info,
                }
            )
        return ids

    def key(self) -> pd.DataFrame:
        key = pd.DataFrame(self.key_rows)
        for col in ("dataset_index", "reuse", "latent_seed", "latent_index"):
            if col in key:
                key[col] = key[col].astype("Int64")
        first = [c for c in KEY_COLUMNS if c in key.columns]
        return key[first + [c for c in key.columns if c not in KEY_COLUMNS]]


def _record(
    payload: dict[str, Any],
    key: pd.DataFrame,
    blocks: Sequence[KitBlock],
    seed: int,
    clue: dict[str, Any] | None,
) -> dict[str, Any]:
    def count(set_no: int, truth: str) -> int:
        return int(((key["set"] == set_no) & (key["truth"] == truth)).sum())

    sets = payload["rounds"][0]["sets"]
    return {
        "format": KIT_FORMAT,
        "kit_id": payload["kit_id"],
        "name": payload["name"],
        "models": [b.model for b in blocks],
        "seed": seed,
        "confidence_levels": payload["confidence_levels"],
        "rounds": [r["round"] for r in payload["rounds"]],
        "second_round": clue,
        "sets": [
            {
                "set": s["set"],
                "label": s["label"],
                "model": key.loc[key["set"] == s["set"], "model"].iloc[0],
                "n_real": count(s["set"], "real"),
                "n_synthetic": count(s["set"], "synthetic"),
            }
            for s in sets
        ],
        "n_items": len(payload["items"]),
        "n_real_reused": int((key.get("reuse", pd.Series(dtype=float)).fillna(0) > 0).sum()),
    }


def assemble_kit(
    blocks: Sequence[KitBlock],
    *,
    name: str,
    seed: int = 0,
    confidence: bool = True,
    second_round: dict[str, Any] | None = None,
    title: str = "Visual Turing Test",
    instructions: str = "",
) -> Kit:
    """A :class:`Kit` from blocks: blinded item ids, shuffled sets and items, rendered images."""
    if not blocks:
        raise ValueError("a kit needs at least one block")
    clue = _second_round(second_round)
    rng = np.random.default_rng(seed)
    blinder = _Blinder(blocks, rng)
    sets1, sets2 = [], []
    for set_no, b_idx in enumerate(rng.permutation(len(blocks)), start=1):
        block = blocks[int(b_idx)]
        ids = blinder.add(block, set_no)
        base = {"set": set_no, "label": block.image_type, "channels": list(block.channels)}
        sets1.append({**base, "items": ids})
        if clue is not None:
            s2 = {**base, "items": [ids[int(k)] for k in rng.permutation(len(ids))]}
            if clue["clue"] == "real_examples" and block.examples is not None:
                examples = block.examples[: clue["n_examples"]]
                s2["examples"] = [_render(e, block.windows) for e in examples]
            sets2.append(s2)
    rounds = [{"round": 1, "clue": None, "sets": sets1}]
    if clue is not None:
        rounds.append(
            {"round": 2, "clue": {"kind": clue["clue"], "text": clue["text"]}, "sets": sets2}
        )
    payload = {
        "format": KIT_FORMAT,
        "version": 1,
        "name": name,
        "title": title,
        "instructions": instructions,
        "confidence_levels": 5 if confidence else 0,
        "rounds": rounds,
        "items": blinder.items,
    }
    payload["kit_id"] = kit_id_of(payload)
    key = blinder.key()
    return Kit(payload=payload, key=key, record=_record(payload, key, blocks, seed, clue))


def write_kit(
    kit: Kit,
    *,
    page_path: str | os.PathLike,
    key_path: str | os.PathLike,
    record_path: str | os.PathLike,
) -> None:
    """Write the page, the answer key and kit.json, each atomically."""
    from medgan import __version__
    from medgan.atomic import write_json, write_text, write_tsv
    from medgan.studies.vtt.page import render_page

    write_tsv(key_path, kit.key)
    write_json(
        record_path,
        {**kit.record, "page": os.path.basename(page_path), "medgan_version": __version__},
    )
    write_text(page_path, render_page(kit.payload))


def build_kit(
    *,
    name: str,
    models: Sequence[str],
    checkpoints: Sequence[str | os.PathLike],
    data_dirs: Sequence[str | os.PathLike],
    splits: Sequence[str | os.PathLike],
    page_path: str | os.PathLike,
    key_path: str | os.PathLike,
    record_path: str | os.PathLike,
    n_real: int = 50,
    n_synthetic: int = 50,
    seed: int = 0,
    confidence: bool = True,
    second_round: dict[str, Any] | None = None,
    title: str = "Visual Turing Test",
    instructions: str = "",
) -> Kit:
    """The workflow's ``vtt_kit``: blocks from trained models, assembled and written."""
    from medgan.studies.vtt.selection import blocks_from_models

    n_examples = int((second_round or {}).get("n_examples", 3))
    if (second_round or {}).get("clue", "none") != "real_examples":
        n_examples = 0
    blocks = blocks_from_models(
        models=models,
        checkpoints=checkpoints,
        data_dirs=data_dirs,
        splits=splits,
        n_real=n_real,
        n_synthetic=n_synthetic,
        seed=seed,
        n_examples=n_examples,
    )
    kit = assemble_kit(
        blocks,
        name=name,
        seed=seed,
        confidence=confidence,
        second_round=second_round,
        title=title,
        instructions=instructions,
    )
    write_kit(kit, page_path=page_path, key_path=key_path, record_path=record_path)
    return kit
