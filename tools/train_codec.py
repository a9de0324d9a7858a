r"""Train an EnCodec (audiocraft's CompressionSolver recipe) on audio files. Re-running resumes.

  python tools/train_codec.py --config=configs/codec.py:NAME --workdir=DIR --config.manifest=FILE.jsonl \
      [--config.audio_dir=DIR] [--config.total_steps=N] [--config.any.field=value]

NAME: encodec_musicgen_32khz, encodec_audiogen_16khz or tiny (default), each optionally with _gan_free
(msspec + L1 only). The corpus is a manifest (audiocraft .jsonl: path, duration, sample_rate) or a
folder, as for tools/tokenize_dataset.py. Writes WORKDIR/metrics.jsonl, WORKDIR/tensorboard and
WORKDIR/checkpoints (generator, EMA, discriminator, optimizers, data position).
"""
import logging
import re
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "codec.py") + ":tiny"
config_flags.DEFINE_config_file("config", None, "configs/codec.py:NAME (default tiny)", lock_config=True)
flags.DEFINE_string("workdir", None, "checkpoints, metrics.jsonl and TensorBoard events go here (reused to resume)")
flags.DEFINE_bool("progress", True, "show a progress bar")
FLAGS = flags.FLAGS


def _usage_error(message: str):
    sys.stderr.write(f"train_codec.py: error: {message}\n")
    sys.exit(2)


def _parse(argv):
    if any(a in ("--help", "-h", "--helpshort", "-?") for a in argv[1:]):
        print(sys.modules["__main__"].__doc__ + "\n" + FLAGS.main_module_help())
        sys.exit(0)
    if not any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
        argv = [argv[0], f"--config={DEFAULT_CONFIG}", *argv[1:]]
    try:
        return FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, (AttributeError, KeyError)):
            name = re.search(r"\w+", str(e))
            _usage_error(f"unknown config field {name.group(0) if name else str(e)!r} (see configs/codec.py)")
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        text = (lines[-1] if "Traceback" in str(e) else " ".join(lines)).replace("\\'", "'").strip("\"'")
        _usage_error(f"bad flag: {text}")


def main(argv):
    if len(argv) > 1:
        _usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    if not FLAGS.workdir:
        _usage_error("--workdir is required: the folder for checkpoints and metrics (reused to resume)")
    cfg = FLAGS.config
    if bool(cfg.manifest) == bool(cfg.audio_dir):
        _usage_error("give exactly one of --config.manifest=FILE.jsonl and --config.audio_dir=DIR")
    logging.getLogger("magnet_jax").setLevel(logging.INFO)
    from magnet_jax.codec_training.loop import train
    from magnet_jax.data.tokenize.corpus import CorpusError
    from magnet_jax.training.checkpoint import CheckpointError
    try:
        last = train(cfg, FLAGS.workdir, progress=FLAGS.progress)
    except (FileNotFoundError, CorpusError, ValueError) as e:   # corpus missing / empty, bad shapes
        _usage_error(str(e).splitlines()[0])
    except (CheckpointError, FloatingPointError) as e:
        sys.stderr.write(f"train_codec.py: error: {e}\n")
        sys.exit(1)
    print({k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()})


if __name__ == "__main__":
    app.run(main, flags_parser=_parse)
