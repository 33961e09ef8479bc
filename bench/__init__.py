"""Benchmarks (`make bench`, `python -m bench`): each runs its baseline beside it, same run,
same machine, and writes bench/results.json. Nothing here asserts a speed."""
