"""EnCodec speed: magnet_jax.codec vs transformers' EncodecModel, facebook/encodec_32khz architecture.

  python -m benchmarks.codec                                   # 30 s clips, batch 1 and 8
  python -m benchmarks.codec --seconds 5 --batches 1 --reps 2  # quick look

Both run in this one process on the same random weights (the reference is saved with
``save_pretrained`` and loaded back with :func:`magnet_jax.convert.encodec.load_encodec`), on the same clips,
with the same thread budget (XLA's CPU pool uses every core; torch gets ``--threads``, default every
core). Reported: seconds of audio coded per wall-clock second (higher is better), the best of
``--reps`` timed runs (magnet_jax after one untimed run that compiles for the shape; transformers
after a warm-up on a 1 s clip of the same batch, as it needs no compilation), and the ratio
ours / reference. Codes are checked to be identical. Writes benchmarks/results/codec.json.
"""
from __future__ import annotations

import os
import tempfile

from absl import app, flags

from benchmarks.common import machine, timeit, write_json

flags.DEFINE_float("seconds", 30.0, "clip length in seconds")
flags.DEFINE_list("batches", ["1", "8"], "batch sizes")
flags.DEFINE_integer("reps", 1, "timed repetitions (min is reported)")
flags.DEFINE_integer("threads", 0, "torch intra-op threads (0 = number of cores)")
flags.DEFINE_float("chunk_seconds", None, "magnet_jax chunk size (default: the library default)")
flags.DEFINE_string("out", None, "JSON output path")
FLAGS = flags.FLAGS


def main(_):
    import jax
    import numpy as np
    import torch

    import tests.reference.shim  # noqa: F401
    from magnet_jax.convert.encodec import load_encodec
    from tests.reference import encodec_ref as R

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(FLAGS.threads or os.cpu_count())
    ref = R.hf_model(seed=0, **R.hf_32khz_kwargs())
    with tempfile.TemporaryDirectory() as d:
        ref.save_pretrained(d)
        ours = load_encodec(d)
    if FLAGS.chunk_seconds is not None:
        ours.chunk_seconds = FLAGS.chunk_seconds
    sr, n = ours.sample_rate, int(FLAGS.seconds * ours.sample_rate)

    results = []
    for b in (int(x) for x in FLAGS.batches):
        wav = R.test_signal("mix", b, 1, n, sr, seed=b)
        x = torch.from_numpy(wav)
        out = {}
        with torch.no_grad():
            ref.decode(ref.encode(x[..., :sr], None, 2.2).audio_codes, [None])  # warm-up, 1 s
            t_ref_enc = timeit(lambda: out.__setitem__("ref", ref.encode(x, None, 2.2).audio_codes),
                               reps=FLAGS.reps, warmup=0)
            t_ref_dec = timeit(lambda: ref.decode(out["ref"], [None]).audio_values, reps=FLAGS.reps, warmup=0)
        t_enc = timeit(lambda: out.__setitem__("ours", jax.block_until_ready(ours.encode(wav))), reps=FLAGS.reps)
        t_dec = timeit(lambda: jax.block_until_ready(ours.decode(out["ours"])), reps=FLAGS.reps)
        same = bool(np.array_equal(np.asarray(out["ours"]), out["ref"][0].numpy()))
        audio_s = b * FLAGS.seconds
        row = dict(batch=b, seconds=FLAGS.seconds, codes_identical=same)
        for what, t_ours, t_ref in (("encode", t_enc, t_ref_enc), ("decode", t_dec, t_ref_dec)):
            row[what] = dict(ours_audio_s_per_s=audio_s / t_ours, ref_audio_s_per_s=audio_s / t_ref,
                             ours_wall_s=t_ours, ref_wall_s=t_ref, ratio=t_ref / t_ours)
            print(f"batch {b} {FLAGS.seconds:g}s {what}: magnet_jax {audio_s / t_ours:.1f} audio-s/s, "
                  f"transformers {audio_s / t_ref:.1f} audio-s/s -> ratio {t_ref / t_ours:.2f}x"
                  f"{'' if same else '  (CODES DIFFER)'}", flush=True)
        results.append(row)

    write_json("codec", dict(benchmark="codec", model="facebook/encodec_32khz architecture, random weights",
                             reps=FLAGS.reps, chunk_seconds=ours.chunk_seconds, machine=machine(),
                             loadavg=os.getloadavg(), results=results), FLAGS.out)


if __name__ == "__main__":
    app.run(main)
