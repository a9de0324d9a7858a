"""Side-by-side benchmarks against the reference implementations. Run as modules from the repo root,
e.g. ``python -m benchmarks.lm_forward`` (a script run from this folder would let
``benchmarks/tokenize.py`` shadow the standard library's ``tokenize``)."""
