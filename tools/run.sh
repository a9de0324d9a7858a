#!/usr/bin/env bash
# The main job on a fresh machine: install, then generate text-to-music clips (WAV + spectrogram PNG).
# Uses facebook/magnet-small-10secs (from the hub, or the local Hugging Face cache). Only when the hub cannot be
# reached (checked in about a second) and the model is not cached, it falls back to the offline model
# (magnet_jax.jobs.generate.OFFLINE_FALLBACK) and says so; every other error (a mistyped --model path, ...)
# stops with a message and a non-zero exit. Any tools/generate.py flag can be added, e.g. --text="..." --duration=10.
# Without --text / --text_file / --unconditional, the clip is of the loaded model's example description, one it
# was trained to follow (the released model's 80s electronic track; the offline model's, a description in its
# training corpus' wording), and the job logs which text it used.
#   bash tools/run.sh [--text="..."] [more tools/generate.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash tools/install.sh)
exec "$VENV/bin/python" tools/generate.py --model=facebook/magnet-small-10secs --offline_fallback=default \
  --out_dir=out "$@"
