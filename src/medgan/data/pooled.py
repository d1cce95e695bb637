"""Han et al. 2018's "Concat" image type: the slices of every sequence pooled into one
single-channel dataset.

Han trained Concat as one GAN on "15,400 images ... (61,600 in total)" of the four sequences
together, so that each synthetic image is a single grey-level slice that mixes the sequences'
appearance. :func:`pool_channels` turns a prepared (N, C, H, W) dataset into a prepared
(C * N, 1, H, W) one: all images of the first channel, then all of the second, and so on;
meta.tsv repeats each row once per channel and says which in a ``sequence`` column. Subjects
keep their ids, so the held-out split still keeps a patient's slices on one side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from medgan.data.prepared import INFO, PreparedDatasetWriter, load_prepared

POOLED_CHANNEL = "Concat"
CHANNEL_MODES = ("stacked", "pooled")


def pool_channels(stacked_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                  channel: str = POOLED_CHANNEL, chunk: int = 4096,
                  provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the single-channel dataset ``out_dir`` from every channel of the prepared dataset
    ``stacked_dir`` (see the module docstring). Returns the new dataset.json content."""
    data = load_prepared(stacked_dir)
    sources = data.channels
    info = {k: v for k, v in data.info.items()
            if k not in ("channels", "n_images", "shape", "value_range", "channel_stats",
                         "medgan_version")}
    info.update(provenance or {})
    info.update({"channel_mode": "pooled", "pooled_channels": sources,
                 "images_per_channel": int(data.images.shape[0])})
    rows = data.meta.to_dict(orient="records")
    with PreparedDatasetWriter(out_dir, channels=[channel], resolution=data.info["resolution"],
                               info=info) as writer:
        for c, name in enumerate(sources):
            for start in range(0, len(rows), chunk):
                block = np.asarray(data.images[start:start + chunk, c:c + 1], dtype=np.float32)
                writer.append(block, [{**r, "sequence": name}
                                      for r in rows[start:start + chunk]])
    return json.loads((Path(out_dir) / INFO).read_text())
