#!/usr/bin/env bash
# Installs everything the tests need (tools/install.sh --tests: magnet-jax, the reference PyTorch packages
# audiocraft 1.3.0 / transformers / CPU torch, headless Chromium) into .venv (or $MAGNET_VENV), runs the linter,
# then pytest (progress per file; every layer: tests/unit, tests/parity, tests/e2e).
#   bash tests/run.sh [pytest args]        e.g. bash tests/run.sh tests/unit   (the torch-free layer, seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash tools/install.sh --tests)
echo "[tests] ruff check" >&2
"$VENV/bin/ruff" check magnet_jax tools benchmarks tests configs
exec "$VENV/bin/python" -m pytest -p no:cacheprovider --timeout=1200 "$@"
