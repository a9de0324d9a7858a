#!/usr/bin/env bash
# Reproduce the bundled offline model from scratch, resumably (issue 14):
#   corpus -> codec training -> codec export -> text encoder -> tokenize (train + valid) -> LM training
#   -> assemble weights (-> magnet_jax/bundled/weights/) -> evaluation.
#   bash tools/make_bundled.sh WORKDIR
# Each step is skipped when its output exists; the two trainers resume from their checkpoints, so re-running the
# same command after a stop continues where it was. The same command runs on a GPU / TPU host: raise the batch and
# step counts with the variables below (e.g. CODEC_BATCH=64 LM_BATCH=128).
# Variables (defaults): CORPUS=$WORKDIR/corpus (an existing corpus folder with train.jsonl / valid.jsonl is reused)
#   MAX_WORKS=0 (all) RENDERS_PER_WORK=1 | CODEC_STEPS=20000 CODEC_BATCH=16 | LM_STEPS LM_BATCH LM_EVAL_EVERY
#   (unset: configs/magnet.py:bundled's total_steps / batch_size / eval_every, the shipped LM's schedule)
#   | EVAL_CLIPS=32 EVAL_SECONDS=10 | INSTALL=1 (copy the weights into the package)
#   PYTHON=.venv/bin/python  EXTRA_CODEC_FLAGS / EXTRA_LM_FLAGS (more --config.* overrides)
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: bash tools/make_bundled.sh WORKDIR" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
W=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$REPO"
PY=${PYTHON:-$REPO/.venv/bin/python}
CORPUS=${CORPUS:-$W/corpus}
CODEC_STEPS=${CODEC_STEPS:-20000}; CODEC_BATCH=${CODEC_BATCH:-16}
LM_FLAGS=()    # only what the caller set: the rest is configs/magnet.py:bundled's
[[ -n ${LM_STEPS:-} ]] && LM_FLAGS+=(--config.total_steps="$LM_STEPS")
[[ -n ${LM_BATCH:-} ]] && LM_FLAGS+=(--config.batch_size="$LM_BATCH")
[[ -n ${LM_EVAL_EVERY:-} ]] && LM_FLAGS+=(--config.eval_every="$LM_EVAL_EVERY" --config.checkpoint_every="$LM_EVAL_EVERY")
EVAL_CLIPS=${EVAL_CLIPS:-32}; EVAL_SECONDS=${EVAL_SECONDS:-10}
step() { echo "== [$(date -u +%H:%M:%S)] $*"; }

step "1/8 corpus -> $CORPUS"
if [[ -f $CORPUS/train.jsonl && -f $CORPUS/valid.jsonl ]]; then echo "   exists, skipped"
else "$PY" tools/build_corpus.py --out_dir="$CORPUS" --max_works="${MAX_WORKS:-0}" \
       --renders_per_work="${RENDERS_PER_WORK:-1}"; fi

step "2/8 codec training ($CODEC_STEPS steps, batch $CODEC_BATCH) -> $W/codec_train"
if [[ -f $W/codec/config.json ]]; then echo "   exported codec exists, skipped"
else "$PY" tools/train_codec.py --config=configs/codec.py:bundled --workdir="$W/codec_train" \
       --config.manifest="$CORPUS/train.jsonl" --config.eval_manifest="$CORPUS/valid.jsonl" \
       --config.total_steps="$CODEC_STEPS" --config.batch_size="$CODEC_BATCH" --progress=false \
       ${EXTRA_CODEC_FLAGS:-}; fi

step "3/8 codec export (EMA, transformers layout) -> $W/codec"
if [[ -f $W/codec/config.json ]]; then echo "   exists, skipped"
else "$PY" tools/export_codec.py --config=configs/codec.py:bundled --workdir="$W/codec_train" \
       --out="$W/codec.tmp" --format=auto && rm -rf "$W/codec" && mv "$W/codec.tmp" "$W/codec"; fi

step "4/8 text encoder (Unigram tokenizer on the training descriptions + frozen T5) -> $W/t5"
if [[ -f $W/t5/model.safetensors ]]; then echo "   exists, skipped"
else rm -rf "$W/t5.tmp" && "$PY" -c "import sys; from magnet_jax.bundled.text import build_text_encoder, \
read_descriptions; build_text_encoder(read_descriptions(sys.argv[1]), sys.argv[2])" "$CORPUS/train.jsonl" \
       "$W/t5.tmp" && mv "$W/t5.tmp" "$W/t5"; fi

step "5/8 tokenize train + valid with the trained codec -> $W/tokens"
for split in train valid; do
  if [[ -f $W/tokens_$split/done ]]; then echo "   $split exists, skipped"; continue; fi
  "$PY" tools/tokenize_dataset.py --manifest="$CORPUS/$split.jsonl" --codec="$W/codec" \
    --data_dir="$W/tokens_$split" --name=bundled --progress=false
  touch "$W/tokens_$split/done"
done
if [[ ! -f $W/tokens/done ]]; then   # one dataset with a train and a valid split (the LM trainer's eval_split)
  "$PY" -c "import sys; from magnet_jax.bundled.splits import merge_splits; merge_splits(sys.argv[1], \
{'train': sys.argv[2], 'valid': sys.argv[3]})" "$W/tokens" "$W/tokens_train" "$W/tokens_valid"
  touch "$W/tokens/done"
fi

step "6/8 LM training (configs/magnet.py:bundled ${LM_FLAGS[*]:-}, eval on the held-out works) -> $W/lm_train"
if [[ -f $W/lm_train/export/magnet_jax_lm.safetensors && -f $W/lm_train/done ]]; then echo "   exists, skipped"
else "$PY" tools/train.py --config=configs/magnet.py:bundled --workdir="$W/lm_train" \
       --config.data_dir="$W/tokens" --config.eval_split=valid --config.text.name="$W/t5" \
       "${LM_FLAGS[@]}" ${EXTRA_LM_FLAGS:-}
     touch "$W/lm_train/done"; fi

step "7/8 assemble -> $W/bundled"
if [[ -f $W/bundled/bundled.json ]]; then echo "   exists, skipped"
else "$PY" -c "import sys; from magnet_jax.bundled.build import assemble; assemble(sys.argv[1], \
lm=sys.argv[2], codec=sys.argv[3], t5=sys.argv[4], info={'corpus': sys.argv[5], 'codec_steps': int(sys.argv[6])})" \
       "$W/bundled" "$W/lm_train" "$W/codec" "$W/t5" "$(basename "$CORPUS")" \
       "$(ls "$W/codec_train/checkpoints" | grep -E '^[0-9]+$' | sort -n | tail -1)"; fi   # the codec's last step
if [[ ${INSTALL:-1} == 1 ]]; then
  rm -rf magnet_jax/bundled/weights && cp -r "$W/bundled" magnet_jax/bundled/weights
  echo "   installed into magnet_jax/bundled/weights ($(du -sh magnet_jax/bundled/weights | cut -f1))"
fi

step "8/8 evaluation -> $W/eval"
if [[ -f $W/eval/eval.json ]]; then echo "   exists, skipped"
else "$PY" tools/evaluate.py --model="$W/bundled" --manifest="$CORPUS/valid.jsonl" --out="$W/eval" \
       --num_clips="$EVAL_CLIPS" --seconds="$EVAL_SECONDS" --tokens="$W/tokens" --lm_workdir="$W/lm_train"; fi
step "done: $W/bundled (eval table: $W/eval/eval.md)"
