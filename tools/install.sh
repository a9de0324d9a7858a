#!/usr/bin/env bash
# Creates / updates the project venv (default .venv, or $MAGNET_VENV) and prints its path on stdout
# (progress goes to stderr).
#   bash tools/install.sh          magnet-jax with the audio + data extras: everything the main job needs, no torch
#                                  (audiocraft .bin checkpoints are read by magnet_jax.convert's own unpickler)
#   bash tools/install.sh --tests  + test tools, the web demo, headless Chromium and tcmalloc (apt) and the reference PyTorch
#                                  packages the parity tests compare against (audiocraft 1.3.0, transformers, encodec)
# PyTorch for the tests is `torch==2.13.0`; where pip would fetch a CUDA build, point it at a CPU wheel index
# first: MAGNET_TORCH_INDEX=URL bash tools/install.sh --tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MAGNET_VENV:-.venv}
WANT=base; [[ ${1:-} == --tests ]] && WANT=tests
STAMP="$VENV/.magnet_installed_$WANT"
say() { echo "[install] $*" >&2; }
if [[ ! -x $VENV/bin/python ]]; then say "creating the virtual environment $VENV"; python3 -m venv "$VENV" >&2; fi
PIP="$VENV/bin/python -m pip -q --disable-pip-version-check"
if [[ ! -f $STAMP || setup.py -nt $STAMP || tools/install.sh -nt $STAMP ]]; then
  if [[ $WANT == tests ]]; then
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
        || ! ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1; then
      say "installing headless Chromium + ChromeDriver (web-demo browser test) and tcmalloc (apt)"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
        libtcmalloc-minimal4) >&2
    fi
    say "installing CPU PyTorch 2.13.0 (reference side of the parity tests only)"
    $PIP install torch==2.13.0 ${MAGNET_TORCH_INDEX:+--index-url "$MAGNET_TORCH_INDEX"} >&2
    say "installing magnet-jax with the test, demo and Beam extras"
    $PIP install -e '.[dev,torch,audio,data,beam,app,eval,corpus]' >&2
    $PIP install "jax[tpu]==$($VENV/bin/python -c 'import jax; print(jax.__version__)')" >&2   # libtpu: TPU compiler for test_tpu_compile.py
    # audiocraft's metadata pins torch 2.1 / xformers: install it without deps, plus what its
    # import chain needs (tests/reference/shim.py stands in for the rest).
    say "installing the reference audiocraft 1.3.0 (no deps) and its import chain"
    $PIP install --no-deps audiocraft==1.3.0 julius num2words flashy dora-search treetable retrying \
        submitit cloudpickle colorlog docopt encodec==0.1.1 >&2
    # torchaudio's Python transforms for audiocraft's codec losses (no wheel matches torch 2.13; its compiled
    # extension is left unloaded by tests/reference/torchaudio_py.py)
    $PIP install --no-deps torchaudio==2.11.1 >&2
    $PIP install einops omegaconf >&2
  else
    say "installing magnet-jax (JAX, Flax, audio + data extras; no torch)"
    $PIP install -e '.[audio,data]' >&2
  fi
  touch "$STAMP"
  say "done: $VENV"
fi
echo "$VENV"
