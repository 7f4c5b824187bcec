"""Benchmarks: each script runs ours and the reference side by side (see README, Benchmarks)."""
