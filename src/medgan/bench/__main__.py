"""``python -m medgan.bench``: the training-speed benchmark (:mod:`medgan.bench.throughput`)."""

import sys

from medgan.bench.throughput import main

sys.exit(main())
