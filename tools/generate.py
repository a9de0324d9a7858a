"""Generate music / sound with MAGNeT: one WAV and one spectrogram PNG per clip.

  python tools/generate.py --model=facebook/magnet-small-10secs --text="happy rock" --duration=10
  python tools/generate.py --model=config:tiny --text="calm piano" --out_dir=out      # random init, offline
  python tools/generate.py --model=DIR --text_file=prompts.txt --batch_size=4 --span_arrangement=stride1
  python tools/generate.py --model=... --text="jazz" --prompt_wav=intro.wav --duration=10         # continue
  python tools/generate.py --model=... --text="drums" --infill_wav=song.wav --infill_start=2 --infill_end=4

--model: a released hub id, a local folder (state_dict.bin + compression_state_dict.bin), or config:NAME.
--offline_fallback=config:tiny: if the hub cannot be reached, use that instead (and say so).
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_string("model", "facebook/magnet-small-10secs", "hub id | local dir | config:NAME (random init)")
flags.DEFINE_multi_string("text", None, "a description (repeatable)")
flags.DEFINE_string("text_file", None, "one description per line")
flags.DEFINE_boolean("unconditional", False, "generate without text")
flags.DEFINE_float("duration", None, "seconds (default: the model's window; longer = windowed long-form)")
flags.DEFINE_float("extend_stride", None, "long-form: new seconds per window (default half the window)")
flags.DEFINE_integer("batch_size", 4, "clips per generate call")
flags.DEFINE_integer("num_samples", 1, "clips per description")
flags.DEFINE_integer("seed", 0, "PRNG seed")
flags.DEFINE_string("out_dir", "out", "where WAVs and PNGs go")
flags.DEFINE_string("offline_fallback", None, "model to use if the hub is unreachable, e.g. config:tiny")
flags.DEFINE_string("t5", None, "T5 hub id or local folder (default: the one the checkpoint names)")
flags.DEFINE_string("codec", None, "EnCodec hub id or local folder (default: the one the checkpoint names)")
flags.DEFINE_string("prompt_wav", None, "audio to continue")
flags.DEFINE_string("infill_wav", None, "audio whose [infill_start, infill_end) seconds are regenerated")
flags.DEFINE_float("infill_start", None, "infill region start (s)")
flags.DEFINE_float("infill_end", None, "infill region end (s)")
# generation knobs (audiocraft names); unset = the model's defaults
flags.DEFINE_boolean("use_sampling", None, "sample (default) or argmax")
flags.DEFINE_float("temp", None, "softmax temperature (annealed to 0 per stage)")
flags.DEFINE_integer("top_k", None, "top-k (0 = off)")
flags.DEFINE_float("top_p", None, "nucleus top-p (0 = off)")
flags.DEFINE_float("max_cfg_coef", None, "CFG coefficient at the first step")
flags.DEFINE_float("min_cfg_coef", None, "CFG coefficient at the last step")
flags.DEFINE_list("decoding_steps", None, "steps per codebook, e.g. 20,10,10,10")
flags.DEFINE_enum("span_arrangement", None, ["nonoverlap", "stride1"], "span arrangement")
flags.DEFINE_enum("span_scoring", None, ["max", "prod"], "span scoring (nonoverlap)")
flags.DEFINE_boolean("anneal_temp", None, "anneal the temperature")
FLAGS = flags.FLAGS

KNOBS = ("use_sampling", "temp", "top_k", "top_p", "max_cfg_coef", "min_cfg_coef", "decoding_steps",
         "span_arrangement", "span_scoring", "anneal_temp")


def main(argv):
    del argv
    from magnet_jax.pipeline import GenerationRequest, run_to_files
    overrides = {k: getattr(FLAGS, k) for k in KNOBS if getattr(FLAGS, k) is not None}
    if "decoding_steps" in overrides:
        overrides["decoding_steps"] = tuple(int(s) for s in overrides["decoding_steps"])
    req = GenerationRequest(
        model=FLAGS.model, texts=FLAGS.text or [], text_file=FLAGS.text_file, unconditional=FLAGS.unconditional,
        duration=FLAGS.duration, extend_stride=FLAGS.extend_stride, batch_size=FLAGS.batch_size,
        num_samples=FLAGS.num_samples, seed=FLAGS.seed, out_dir=FLAGS.out_dir, offline_fallback=FLAGS.offline_fallback,
        prompt_wav=FLAGS.prompt_wav, infill_wav=FLAGS.infill_wav, infill_start=FLAGS.infill_start,
        infill_end=FLAGS.infill_end, overrides=overrides, t5=FLAGS.t5, codec=FLAGS.codec)
    try:
        run_to_files(req, log=print)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
