"""Benchmarks: each module runs from the repository root as ``python -m bench.<name>`` and writes JSON and a plot under
bench/results/."""
