"""Which codebook carries the music? Real held-out clips through the codec with some codebooks replaced by uniform
random codes, scored as ``tools/evaluate.py`` scores clips.

  python -m benchmarks.codebook_ablation [--model=bundled] --manifest=CORPUS/valid.jsonl [--num_clips=16]

Each clip (``--seconds``, evenly spaced over the manifest) is encoded by the model's codec; the codes are decoded
as they are, with codebooks >= 1, >= 2, >= 3 replaced by uniform random codes, and with codebook 0 replaced. Per
variant: FAD (mel frames) against the real clips themselves and the instrument-family accuracy of evaluate's
classifier (trained on ``--num_train`` training clips). It tells where an LM's errors cost most: a codebook
whose random replacement barely moves FAD is one the LM may get wrong cheaply. Writes
``benchmarks/results/codebook_ablation.json``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import app, flags

flags.DEFINE_string("model", "bundled", "model whose codec is probed (MagnetPipeline.from_pretrained)")
flags.DEFINE_string("manifest", None, "held-out manifest (.jsonl; tools/build_corpus.py)")
flags.DEFINE_integer("num_clips", 16, "held-out clips")
flags.DEFINE_integer("num_train", 100, "training clips for the family classifier (train.jsonl next to --manifest)")
flags.DEFINE_float("seconds", 10.0, "clip length")
flags.DEFINE_integer("seed", 0, "seed of the random codes")
flags.DEFINE_string("out", None, "JSON output (default benchmarks/results/codebook_ablation.json)")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.manifest:
        raise app.UsageError("--manifest=CORPUS/valid.jsonl is required")
    import jax.numpy as jnp

    from benchmarks.common import machine, write_json
    from magnet_jax.eval.adherence import measure
    from magnet_jax.eval.fad import MelEmbedding
    from magnet_jax.eval.report import _fad, family_classifier, read_clip, read_manifest
    from magnet_jax.pipelines.magnet import MagnetPipeline

    pipe = MagnetPipeline.from_pretrained(FLAGS.model)
    sr, card = pipe.sample_rate, pipe.lm.config.card
    valid = read_manifest(FLAGS.manifest, FLAGS.num_clips)
    train = read_manifest(Path(FLAGS.manifest).with_name("train.jsonl"), FLAGS.num_train)
    clf = family_classifier(train, sr, FLAGS.seconds)
    real = [read_clip(r["path"], sr, FLAGS.seconds) for r in valid]
    fams = [r["meta"]["instrument_family"] for r in valid]
    emb = MelEmbedding(sample_rate=sr)
    rng = np.random.default_rng(FLAGS.seed)
    K = pipe.lm.config.n_q

    def randomise(lo, hi):
        def f(c):
            return c.at[:, lo:hi].set(jnp.asarray(rng.integers(0, card, c[:, lo:hi].shape), c.dtype))
        return f

    variants = {"all real codes": lambda c: c, **{f"codebooks >= {k} random": randomise(k, K) for k in range(1, K)},
                "codebook 0 random": randomise(0, 1)}
    rows = {}
    for name, f in variants.items():
        codes = [pipe.codec.encode(np.asarray(w, np.float32)[None, None]) for w in real]
        wavs = [np.asarray(pipe.codec.decode(f(c)))[0, 0, :w.size] for c, w in zip(codes, real)]
        acc = float(np.mean([clf.predict(measure(w, sr)["features"][None])[0] == y for w, y in zip(wavs, fams)]))
        rows[name] = dict(family_accuracy=acc, fad=_fad(emb, [(w, sr) for w in wavs], [(w, sr) for w in real]))
        print(name, rows[name], flush=True)
    write_json("codebook_ablation", {"benchmark": "codebook_ablation", "machine": machine(), "model": FLAGS.model,
                                     "num_clips": len(real), "seconds": FLAGS.seconds, "rows": rows}, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
