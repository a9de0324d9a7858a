"""Helpers that build the *reference* PyTorch models (audiocraft 1.3.0, transformers) with random
weights, for parity tests and side-by-side benchmarks. Importing this package installs the import
shim (see `shim.py`); it needs the test environment from `tests/run.sh`."""
