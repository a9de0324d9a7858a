"""Decoding knobs of a model, scored as ``tools/evaluate.py`` scores clips, on a tuning manifest (not the test set).

  python -m benchmarks.decoding_tuning --manifest=CORPUS/valid_r1.jsonl --train_manifest=CORPUS/train_r0.jsonl \\
      --variant="model default=" --variant="choice temp 2=choice_temp=2.0" \\
      --variant="40 first-stage steps=decoding_steps=[40,10,10,10]" [--kept] [--num_clips=56]

Each ``--variant`` is ``LABEL=[KNOB=VALUE|KNOB=VALUE...]`` (decoding knobs over ``--model``'s defaults, values as
JSON). For ``--num_clips`` clips of ``--manifest`` every variant generates 10 s from each clip's description (seed =
the index of the batch's first clip) and is scored against the manifest's real clips: instrument family (the
classifier of ``tools/evaluate.py``, trained on ``--train_manifest``), mode, key, tempo, FAD on mel frames; plus
``own_code_overlap``, the fraction of generated codebook-0 frames whose code occurs in the real clip's codebook 0
(``other_code_overlap``: in the next clip's), which says whether the description brings the clip's code palette.
The manifest for choosing knobs is the held-out works' *second* renders (``tools/build_corpus.py
--renders_per_work=2``: other instruments, tempi and keys of the same works), so the test clips (their first
renders, ``tools/evaluate.py``'s) never pick a knob. ``--kept`` adds rows whose codebooks ``0..s-1`` are the real
clip's and ``s..`` the model's (``s = 1, 2, 3``), and a row with real codebook 0 under uniformly random codebooks
``1..``: how much of the distance each codebook costs. Writes ``benchmarks/results/decoding_tuning.json`` (a
re-run replaces the rows it names and keeps the others).
"""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks.generated_codes import parse_knob_list

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model", "bundled", "MagnetPipeline.from_pretrained name or folder")
    flags.DEFINE_string("manifest", None, "tuning manifest (.jsonl; tools/build_corpus.py)")
    flags.DEFINE_string("train_manifest", None, "training manifest: the family classifier's clips")
    flags.DEFINE_multi_string("variant", [], "LABEL=[KNOB=VALUE|...]: decoding knobs over the model's defaults")
    flags.DEFINE_bool("kept", False, "also rows with the real clip's first codebooks kept (which codebook costs FAD)")
    flags.DEFINE_integer("num_clips", 56, "clips of the manifest (a multiple of --batch_size)")
    flags.DEFINE_integer("batch_size", 8, "generations per call")
    flags.DEFINE_string("out", None, "JSON output (default benchmarks/results/decoding_tuning.json)")


def parse_knobs(spec: str) -> tuple[str, dict]:
    """``"LABEL=temp=2.0|decoding_steps=[40,10,10,10]"`` -> (label, knobs); ``"LABEL="``: no knob."""
    label, sep, rest = spec.partition("=")
    if not sep or not label:
        raise app.UsageError(f"--variant={spec!r}: expected LABEL=[KNOB=VALUE|...]")
    return label, parse_knob_list(spec, [k for k in rest.split("|") if k])


def code_overlap(generated: np.ndarray, real: np.ndarray) -> dict:
    """Codebook 0 of ``generated`` / ``real`` [B, K, T]: the fraction of generated frames whose code occurs in the
    same clip's real codebook 0 (``own``) and in the next clip's (``other``)."""
    g, r = generated[:, 0], real[:, 0]
    own = [np.isin(g[i], r[i]).mean() for i in range(len(g))]
    other = [np.isin(g[i], r[(i + 1) % len(g)]).mean() for i in range(len(g))]
    return dict(own_code_overlap=float(np.mean(own)), other_code_overlap=float(np.mean(other)))


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "first", "mask_id", "span_len"))
def _decode_from(graphdef, config, state, hidden, mask, real, rng, first, mask_id, span_len):
    """The decoding loop on codebooks ``first..`` with codebooks ``0..first-1`` fixed to ``real`` [B, K, T]."""
    from magnet_jax.decoding.loop import decode_loop
    from magnet_jax.decoding.model_logits import cfg_logits_fn
    keep = jnp.zeros((real.shape[0], real.shape[-1]), bool)
    codes, _ = decode_loop(cfg_logits_fn(graphdef, state, hidden, mask), config, real, keep, rng, mask_id=mask_id,
                           span_len=span_len, first_stage=first)
    return codes


def main(argv):
    del argv
    if not FLAGS.manifest or not FLAGS.train_manifest or not (FLAGS.variant or FLAGS.kept):
        raise app.UsageError("--manifest, --train_manifest and a --variant (or --kept) are required")
    if FLAGS.num_clips % FLAGS.batch_size:
        raise app.UsageError(f"--num_clips={FLAGS.num_clips} is not a multiple of --batch_size={FLAGS.batch_size}")
    from flax import nnx

    from benchmarks.common import machine, write_json
    from magnet_jax.decoding.config import with_knobs
    from magnet_jax.eval.fad import MelEmbedding
    from magnet_jax.eval.report import _row, family_classifier, read_clip, read_manifest
    from magnet_jax.pipelines.magnet import MagnetPipeline

    pipe = MagnetPipeline.from_pretrained(FLAGS.model)
    default = pipe.generation
    sr, b = pipe.sample_rate, FLAGS.batch_size
    rows_in = read_manifest(FLAGS.manifest, FLAGS.num_clips)
    if len(rows_in) < FLAGS.num_clips:
        raise app.UsageError(f"{FLAGS.manifest} has {len(rows_in)} clips, fewer than --num_clips={FLAGS.num_clips}")
    metas = [r["meta"] for r in rows_in]
    texts = [m["description"] for m in metas]
    real = [read_clip(r["path"], sr, 10.0) for r in rows_in]
    clf = family_classifier(read_manifest(FLAGS.train_manifest, 200), sr, 10.0)
    emb = MelEmbedding(sample_rate=sr)
    ref = [(w, sr) for w in real]
    rcodes = np.concatenate([np.asarray(pipe.encode_audio(w[None], sr)) for w in real])

    def decode(codes):
        wavs = [np.asarray(pipe.decode_codes(codes[i:i + b]))[:, 0] for i in range(0, len(codes), b)]
        return [w[:10 * sr] for batch in wavs for w in batch]

    def score(codes, extra=None):
        r = _row(decode(codes), sr, metas, clf, emb, ref)
        r.pop("clips", None)
        return {**{k: v for k, v in r.items() if isinstance(v, (int, float))}, **(extra or {})}

    path = Path(FLAGS.out or Path(__file__).resolve().parent / "results" / "decoding_tuning.json")
    result = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    rows = result["rows"]
    for spec in FLAGS.variant:
        label, knobs = parse_knobs(spec)
        t0 = time.time()
        pipe.generation = with_knobs(default, knobs, f"--variant={label}")
        g = np.concatenate([np.asarray(pipe.generate_codes(texts[i:i + b], duration=10.0, seed=i))
                            for i in range(0, len(texts), b)])
        T = min(g.shape[-1], rcodes.shape[-1])
        rows[label] = score(g, {"knobs": knobs, **code_overlap(g[..., :T], rcodes[..., :T])})
        print(label, f"{time.time() - t0:.0f} s", rows[label], flush=True)
    pipe.generation = default
    if FLAGS.kept:
        rows["real codes (codec round trip)"] = score(rcodes)
        graphdef, state = nnx.split(pipe.lm)
        c = pipe.lm.config
        for first in (3, 2, 1):
            out = []
            for i in range(0, len(texts), b):
                hidden, mask = pipe.encode_text(texts[i:i + b])
                out.append(np.asarray(_decode_from(graphdef, default, state, hidden, mask, jnp.asarray(rcodes[i:i + b]),
                                                   jax.random.key(i), first, c.mask_id, c.span_len)))
            kept = "real codebook 0" if first == 1 else f"real codebooks 0-{first - 1}"
            gen = f"generated codebook {first}" if first == c.n_q - 1 else f"generated {first}-{c.n_q - 1}"
            name = f"{kept}, {gen}"
            rows[name] = score(np.concatenate(out), {"kept": first})
            print(name, rows[name], flush=True)
        rand = rcodes.copy()
        rand[:, 1:] = np.random.default_rng(0).integers(0, c.card, rand[:, 1:].shape)
        rows[f"real codebook 0, uniformly random codebooks 1-{c.n_q - 1}"] = score(rand, {"kept": 1})
    result.update(model=FLAGS.model, manifest=FLAGS.manifest, num_clips=len(texts), seconds=10.0,
                  embedding=emb.name, default_generation=default.to_dict(), machine=machine())
    print(write_json(path.stem, result, FLAGS.out))


if __name__ == "__main__":
    define_flags()
    app.run(main)
