"""Benchmarks of training speed: ``python -m medgan.bench`` (see :mod:`medgan.bench.throughput`).

* :mod:`medgan.bench.throughput`: images/s, ms per step, memory, FLOPs of each architecture,
  eager fp32 vs fast (bf16, channels_last, compile), in one process;
* :mod:`medgan.bench.ddp`: data-parallel scaling, 1 vs N torchrun processes (``--processes``).

The benchmarks of the workflow's other steps (preparation, metrics, utility) are scripts in the
repository's ``benchmarks/`` folder.
"""

from medgan.bench.throughput import (
    format_process_table,
    format_table,
    main,
    peak_bf16_tflops,
    run_benchmark,
    run_process_benchmark,
)

__all__ = ["format_process_table", "format_table", "main", "peak_bf16_tflops", "run_benchmark",
           "run_process_benchmark"]
