"""pytest-benchmark microbenchmarks of every kernel x backend x dtype x size: run
``pytest benchmarks/micro --benchmark-only`` (see benchmarks/README.md)."""
