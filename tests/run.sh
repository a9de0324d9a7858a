#!/usr/bin/env bash
# Installs everything the tests need (tools/install.sh --tests: magnet-jax + the reference PyTorch
# packages audiocraft 1.3.0 / transformers / CPU torch) into .venv (or $MAGNET_VENV) and runs pytest.
#   bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash tools/install.sh --tests)
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
