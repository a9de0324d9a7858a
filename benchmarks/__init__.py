"""Side-by-side benchmarks against the reference implementations. Run as modules from the repo root,
e.g. ``python -m benchmarks.lm_forward``."""
