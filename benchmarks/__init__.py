"""The benchmark suite: kernel rows against the byte floor, optimizer-step overhead and
end-to-end training steps against SAM, AdamW and the peers. Run ``python -m benchmarks.run``."""
