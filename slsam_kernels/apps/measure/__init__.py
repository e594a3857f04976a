"""Measurement helpers for the evaluation and the benchmarks: live tensor memory, what a
step's peak is made of, where a run writes and which revision it measured."""
