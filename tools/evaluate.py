r"""Evaluate a model on held-out music: FAD, text adherence (key / mode, tempo, instrument family), codec
reconstruction. Writes OUT/eval.json, OUT/eval.md (the table), OUT/adherence.png, OUT/spectrograms.png.

  python tools/evaluate.py --model=bundled --manifest=CORPUS/valid.jsonl --out=DIR [--num_clips=16]
  python tools/evaluate.py --manifest=CORPUS/valid.jsonl --out=DIR        # only the real-clip reference row
  python tools/evaluate.py --manifest=CORPUS/valid.jsonl --out=DIR --codec=new=W/codec --codec=old=OLD
                                                    # + a codec round-trip row per --codec (no LM)
  python tools/evaluate.py --model=bundled ... --generation=max_cfg_coef=10   # other decoding knobs

--model: anything MagnetPipeline.from_pretrained loads ("bundled", a bundled-layout folder, a hub id).
Rows: real (held-out clips vs their own metadata), model (generations from the held-out descriptions),
random (same architecture, random-init LM). The family classifier trains on --train_manifest
(default: train.jsonl next to --manifest).
"""

from pathlib import Path

from absl import flags

from magnet_jax.util.cli import run, usage_error

flags.DEFINE_string("model", None, "model to evaluate (MagnetPipeline.from_pretrained name or folder)")
flags.DEFINE_string("manifest", None, "held-out manifest (.jsonl with sidecar .json metadata)")
flags.DEFINE_string("train_manifest", None, "manifest the family classifier trains on (default: train.jsonl "
                    "next to --manifest)")
flags.DEFINE_string("out", None, "output folder")
flags.DEFINE_integer("num_clips", 16, "held-out clips (evenly spaced over the manifest)")
flags.DEFINE_integer("num_train", 200, "training clips for the family classifier")
flags.DEFINE_float("seconds", 10.0, "seconds per clip (generations: at most the model's window)")
flags.DEFINE_bool("random_baseline", True, "also evaluate a random-init LM of the same architecture")
flags.DEFINE_integer("batch_size", 4, "generations per call")
flags.DEFINE_integer("seed", 0, "generation seed")
flags.DEFINE_bool("plots", True, "write adherence.png and spectrograms.png")
flags.DEFINE_string("tokens", None, "tokenized corpus with train + valid splits: adds the unigram baseline per stage")
flags.DEFINE_string("lm_workdir", None, "tools/train.py workdir: adds its last held-out loss per stage")
flags.DEFINE_multi_string("codec", [], "NAME=FOLDER (or FOLDER): add a codec round-trip row (held-out clips "
                          "encoded + decoded, scored as generations); repeatable")
flags.DEFINE_multi_string("generation", [], "KNOB=VALUE: a decoding knob over the model's defaults (a "
                          "GenerationConfig field, e.g. max_cfg_coef=10, decoding_steps=[40,10,10,10]); repeatable")
FLAGS = flags.FLAGS


def _generation(specs) -> dict:
    import json
    out = {}
    for spec in specs:
        knob, sep, value = spec.partition("=")
        if not sep or not knob:
            usage_error(f"--generation={spec}: expected KNOB=VALUE, e.g. --generation=max_cfg_coef=10")
        try:
            out[knob] = json.loads(value)
        except ValueError:
            out[knob] = value                          # a string knob: span_arrangement=stride1
    return out


def _codecs(specs) -> dict:
    out = {}
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
        if not Path(path).exists():
            usage_error(f"--codec={spec}: {path} does not exist (NAME=FOLDER of an exported codec)")
        out[name or Path(path).name] = path
    return out


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    if not FLAGS.manifest or not FLAGS.out:
        usage_error("--manifest=FILE.jsonl and --out=DIR are required")
    if FLAGS.num_clips < 3:
        usage_error("--num_clips must be at least 3")
    from magnet_jax.util.user_input import finite
    finite("seconds", FLAGS.seconds, positive=True)     # inf / nan: one line (a UserError), not a traceback
    from magnet_jax.bundled.package import BundledMissingError
    from magnet_jax.eval.report import evaluate
    from magnet_jax.hub import HubError
    try:
        evaluate(FLAGS.manifest, FLAGS.out, model=FLAGS.model, train_manifest=FLAGS.train_manifest,
                 num_clips=FLAGS.num_clips, num_train=FLAGS.num_train, seconds=FLAGS.seconds,
                 random_baseline=FLAGS.random_baseline, seed=FLAGS.seed, batch_size=FLAGS.batch_size,
                 plots=FLAGS.plots, tokens=FLAGS.tokens, codecs=_codecs(FLAGS.codec),
                 generation=_generation(FLAGS.generation),
                 lm_metrics=f"{FLAGS.lm_workdir}/metrics.jsonl" if FLAGS.lm_workdir else None)
    except (BundledMissingError, FileNotFoundError, HubError, ValueError) as e:
        usage_error(str(e).splitlines()[0])


if __name__ == "__main__":
    run(main)
