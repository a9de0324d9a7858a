#!/usr/bin/env bash
# Installs everything the tests need (tools/install.sh --tests: magnet-jax, the reference PyTorch packages
# audiocraft 1.3.0 / transformers / CPU torch, headless Chromium) into .venv (or $MAGNET_VENV), runs the linter,
# then pytest on 2 worker processes (MAGNET_TEST_WORKERS; one test file per worker at a time) over every layer:
# tests/unit, tests/integration, tests/parity, tests/e2e, less the `slow` drills.
#   bash tests/run.sh [pytest args]        e.g. bash tests/run.sh tests/unit   (the torch-free layer, seconds)
#   bash tests/run.sh -m ""                everything, the slow drills too
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash tools/install.sh --tests)
echo "[tests] ruff check" >&2
"$VENV/bin/ruff" check magnet_jax tools benchmarks tests configs
exec "$VENV/bin/python" -m pytest -p no:cacheprovider --timeout=1200 -n "${MAGNET_TEST_WORKERS:-2}" --dist loadfile "$@"
