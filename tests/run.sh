#!/usr/bin/env bash
# Installs everything the tests need into a venv (default .venv, or $MAGNET_VENV) and runs them.
# The reference PyTorch packages (audiocraft 1.3.0, transformers' EncodecModel / T5EncoderModel)
# are installed next to magnet-jax so that the parity tests compare against the real thing.
#   bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MAGNET_VENV:-.venv}
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip -q --disable-pip-version-check"
if ! "$VENV/bin/python" -c 'import magnet_jax, torch, audiocraft, transformers, pytest' 2>/dev/null \
   || [[ setup.py -nt $VENV/.magnet_installed || tests/run.sh -nt $VENV/.magnet_installed ]]; then
  # CPU torch first: a plain `torch` requirement would pull a multi-GB CUDA build.
  $PIP install torch==2.13.0
  $PIP install -e '.[dev,torch,audio,data,beam]'
  # audiocraft's metadata pins torch 2.1 / xformers: install it without deps, plus what its
  # import chain needs (tests/reference/shim.py stands in for the rest).
  $PIP install --no-deps audiocraft==1.3.0 julius num2words flashy dora-search treetable retrying \
      submitit cloudpickle colorlog docopt
  $PIP install einops omegaconf
  touch "$VENV/.magnet_installed"
fi
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
