r"""Train an EnCodec (audiocraft's CompressionSolver recipe) on audio files. Re-running resumes.

  python tools/train_codec.py --config=configs/codec.py:NAME --workdir=DIR --config.manifest=FILE.jsonl \
      [--config.audio_dir=DIR] [--config.total_steps=N] [--config.any.field=value]

NAME: encodec_musicgen_32khz, encodec_audiogen_16khz or tiny (default), each optionally with _gan_free
(msspec + L1 only). The corpus is a manifest (audiocraft .jsonl: path, duration, sample_rate) or a
folder, as for tools/tokenize_dataset.py. Writes WORKDIR/metrics.jsonl, WORKDIR/tensorboard and
WORKDIR/checkpoints (generator, EMA, discriminator, optimizers, data position) and WORKDIR/config.json (the
config, read by tools/export_codec.py; a resume with another model config is refused, naming the fields).
"""
import logging
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from magnet_jax.util.cli import run, usage_error
from magnet_jax.util.user_input import writable_dir

DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "codec.py") + ":tiny"
config_flags.DEFINE_config_file("config", None, "configs/codec.py:NAME (default tiny)", lock_config=True)
flags.DEFINE_string("workdir", None, "checkpoints, metrics.jsonl and TensorBoard events go here (reused to resume)")
flags.DEFINE_bool("progress", True, "show a progress bar")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    if not FLAGS.workdir:
        usage_error("--workdir is required: the folder for checkpoints and metrics (reused to resume)")
    cfg = FLAGS.config
    if bool(cfg.manifest) == bool(cfg.audio_dir):
        usage_error("give exactly one of --config.manifest=FILE.jsonl and --config.audio_dir=DIR")
    logging.getLogger("magnet_jax").setLevel(logging.INFO)
    workdir = writable_dir("workdir", FLAGS.workdir)
    from magnet_jax.codec_training.loop import train
    from magnet_jax.data.tokenize.corpus import CorpusError
    from magnet_jax.training.checkpoint import CheckpointError
    from magnet_jax.training.run_config import ConfigMismatchError, explain_mismatch, read_recorded, record_config
    recorded = read_recorded(workdir)
    if recorded is None and not (workdir / "checkpoints").is_dir():   # a new run: export_codec reads it
        record_config(workdir, cfg)
    try:
        last = train(cfg, workdir, progress=FLAGS.progress)
    except ConfigMismatchError as e:          # intact checkpoints of another model
        usage_error(explain_mismatch(e, recorded, cfg, "the --config they were trained with"))
    except (FileNotFoundError, CorpusError, ValueError) as e:   # corpus missing / empty, bad shapes
        usage_error(str(e).splitlines()[0])
    except (CheckpointError, FloatingPointError) as e:
        sys.stderr.write(f"train_codec.py: error: {e}\n")
        sys.exit(1)
    if recorded is not None:       # a resumed run finished: its config is the one the checkpoints have now
        record_config(workdir, cfg)
    print({k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()})


if __name__ == "__main__":
    run(main, tcmalloc=True, default_config=DEFAULT_CONFIG, fields_hint="see configs/codec.py")
