"""Does the LM use the codes around a masked span? Held-out masked loss and accuracy per mask rate, next to copying
the nearest kept code on the left, and the code statistics of generated clips next to real ones.

  python -m benchmarks.context_use --manifest=CORPUS/valid.jsonl --model=NAME=FOLDER [--model=...] [--num_clips=16]

Each ``--model`` is a pipeline folder (``MagnetPipeline.from_pretrained``: ``bundled`` or an assembled folder).
The held-out clips (evenly spaced over the manifest, 10 s) are encoded with the model's codec and scored with
their own descriptions:

* ``masked``: for each mask rate, span masks as in training (``objectives.magnet.span_mask``, 3 seeds), the
  LM's cross-entropy and top-1 accuracy on the masked codes of a stage (codebooks above it masked, below it
  given), and ``copy_left``: the accuracy of predicting each masked code by the nearest kept code on its left.
  Real codes of a sustained note repeat (the first codebook changes in about a quarter of the frames), so an LM
  that reads its neighbours gets better as the mask rate falls; one that only reads the text and the bag of
  codes stays flat.
* ``generated``: clips generated from the same descriptions at the model's decoding: the fraction of frames
  whose code differs from the previous frame's per codebook, and the distinct first-codebook codes per clip,
  next to the real clips' codes.

Writes ``benchmarks/results/context_use.json``; ``python -m benchmarks.tables context_use``.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
from absl import app, flags

from benchmarks.common import code_stats

flags.DEFINE_string("manifest", None, "held-out manifest (.jsonl with sidecar .json metadata)")
flags.DEFINE_multi_string("model", [], "NAME=FOLDER of a pipeline folder (default: bundled=bundled)")
flags.DEFINE_integer("num_clips", 16, "held-out clips (evenly spaced over the manifest)")
flags.DEFINE_list("rates", ["0.05", "0.2", "0.5", "0.8", "0.95", "1.0"], "mask rates")
flags.DEFINE_list("stages", ["0", "1"], "stages (codebooks) scored")
flags.DEFINE_bool("generate", True, "also generate from the descriptions and compare code statistics")
flags.DEFINE_string("out", None, "JSON output (default benchmarks/results/context_use.json)")
FLAGS = flags.FLAGS
SEEDS = 3


def copy_left_hits(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """bool per masked position (row-major order of ``mask``): does the nearest kept code on its left equal it?
    A masked position with no kept code on its left is a miss. ``targets`` int [B, T], ``mask`` bool [B, T]."""
    T = targets.shape[1]
    kept_at = np.where(~mask, np.arange(T)[None, :], -1)
    last = np.maximum.accumulate(kept_at, axis=1)                           # nearest kept index <= t
    src = np.take_along_axis(targets, np.maximum(last, 0), axis=1)
    return ((last >= 0) & (src == targets))[mask]


def masked_scores(pipe, codes, hidden, tmask, rates, stages) -> dict:
    import jax
    import jax.numpy as jnp

    from magnet_jax.objectives.magnet import masked_inputs, span_mask
    lm, B, T = pipe.lm, codes.shape[0], codes.shape[-1]
    out = {}
    for stage in stages:
        tgt = np.asarray(codes[:, stage])
        for rate in rates:
            nll, hit, copy = [], [], []
            for seed in range(SEEDS):
                m = span_mask(jax.random.key(seed), jnp.full((B,), rate), T, lm.config.span_len)
                inputs = masked_inputs(codes, stage, m, lm.config.mask_id)
                lp = jax.nn.log_softmax(lm.stage_logits(inputs, hidden, tmask, stage), -1)
                lp, mm = np.asarray(lp), np.asarray(m)
                nll.append(-np.take_along_axis(lp, tgt[..., None], -1)[..., 0][mm])
                hit.append((lp.argmax(-1) == tgt)[mm])
                copy.append(copy_left_hits(tgt, mm))
            out[f"stage{stage}_rate{rate:g}"] = {
                "stage": stage, "rate": rate, "ce": float(np.mean(np.concatenate(nll))),
                "accuracy": float(np.mean(np.concatenate(hit))), "copy_left": float(np.mean(np.concatenate(copy)))}
            print(f"  stage {stage} rate {rate:g}: {out[f'stage{stage}_rate{rate:g}']}", flush=True)
    return out


def main(argv):
    del argv
    if not FLAGS.manifest:
        raise app.UsageError("--manifest=FILE.jsonl (held-out clips with descriptions) is required")
    import jax.numpy as jnp

    from benchmarks.common import machine, write_json
    from magnet_jax.eval.report import read_clip, read_manifest
    from magnet_jax.pipelines.magnet import MagnetPipeline
    models = dict(spec.split("=", 1) if "=" in spec else (spec, spec) for spec in FLAGS.model) or {"bundled": "bundled"}
    rates, stages = [float(r) for r in FLAGS.rates], [int(s) for s in FLAGS.stages]
    clips = read_manifest(FLAGS.manifest, FLAGS.num_clips)
    texts = [c["meta"]["description"] for c in clips]
    rows, t0 = {}, time.time()
    for name, folder in models.items():
        print(name, folder, flush=True)
        pipe = MagnetPipeline.from_pretrained(folder)
        T = pipe.lm.config.segment_frames
        codes = np.concatenate([np.asarray(pipe.encode_audio(read_clip(c["path"], pipe.sample_rate,
                                                                       T / pipe.frame_rate), pipe.sample_rate))
                                for c in clips])[..., :T]
        if codes.shape[-1] < T:
            raise app.UsageError(f"{FLAGS.manifest}: clips shorter than the model's {T / pipe.frame_rate:g} s window")
        hidden, tmask = pipe.encode_text(texts)
        row = {"folder": folder, "masked": masked_scores(pipe, jnp.asarray(codes), hidden, tmask, rates, stages),
               "real_codes": code_stats(codes[..., :pipe.lm_frames()])}
        if FLAGS.generate:
            gen = np.concatenate([np.asarray(pipe.generate_codes(texts[i:i + 4], seed=i))
                                  for i in range(0, len(texts), 4)])
            row["generated_codes"] = code_stats(gen)
            row["generation"] = dataclasses.asdict(pipe.generation)
        rows[name] = row
    out = {"benchmark": "context_use", "machine": machine(), "manifest": str(FLAGS.manifest),
           "num_clips": FLAGS.num_clips, "seeds": SEEDS, "rows": rows, "wall_s": time.time() - t0}
    write_json("context_use", out, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
