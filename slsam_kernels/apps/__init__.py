"""The tools at the edge, built on the optimizers: the demo (``python -m slsam_kernels demo``)
and its fine-tuning harness, the accuracy evaluation, ``info``, and the measurement helpers
the benchmarks share. Nothing in the library imports them."""
