#!/usr/bin/env bash
# Creates / updates the project venv (default .venv, or $MAGNET_VENV) and prints its path.
#   bash tools/install.sh          magnet-jax with the audio + data extras and CPU PyTorch (checkpoint conversion)
#   bash tools/install.sh --tests  + test tools and the reference PyTorch packages the parity tests compare against
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MAGNET_VENV:-.venv}
WANT=base; [[ ${1:-} == --tests ]] && WANT=tests
STAMP="$VENV/.magnet_installed_$WANT"
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV" >&2
PIP="$VENV/bin/python -m pip -q --disable-pip-version-check"
if [[ ! -f $STAMP || setup.py -nt $STAMP || tools/install.sh -nt $STAMP ]]; then
  # CPU torch first: a plain `torch` requirement would pull a multi-GB CUDA build.
  $PIP install torch==2.13.0 >&2
  if [[ $WANT == tests ]]; then
    $PIP install -e '.[dev,torch,audio,data,beam]' >&2
    # audiocraft's metadata pins torch 2.1 / xformers: install it without deps, plus what its
    # import chain needs (tests/reference/shim.py stands in for the rest).
    $PIP install --no-deps audiocraft==1.3.0 julius num2words flashy dora-search treetable retrying \
        submitit cloudpickle colorlog docopt encodec==0.1.1 >&2
    $PIP install einops omegaconf >&2
  else
    $PIP install -e '.[torch,audio,data]' >&2
  fi
  touch "$STAMP"
fi
echo "$VENV"
