"""``python -m medgan.training ARGS.json``: one process of a torchrun training run.

``ARGS.json`` holds the keyword arguments of :func:`~medgan.training.loop.train_gan` (with
``data_dir`` and ``out_dir``), as :mod:`medgan.training.launch` writes them; each process that
torchrun starts runs ``train_gan`` with them and trains its shard. Exit status 75 on SIGTERM
(a checkpoint was written; run again to resume).
"""

from __future__ import annotations

import json
import logging
import sys

from medgan.training.loop import train_gan


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m medgan.training ARGS.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    with open(argv[0]) as fh:
        kwargs = json.load(fh)
    kwargs.pop("processes", None)
    train_gan(kwargs.pop("data_dir"), kwargs.pop("out_dir"), **kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
