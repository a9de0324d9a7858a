"""Train MAGNeT on a tokenized dataset. Running it again on the same workdir resumes.

  python tools/train.py --config=configs/magnet.py:tiny --workdir=DIR --config.data_dir=TFDS_DIR \
      --config.total_steps=N --config.checkpoint_every=M --config.seed=S [--config.any.field=value]

NAME after ``configs/magnet.py:`` is a released model (magnet_small_10secs, ... audio_magnet_medium) or
tiny / tiny_audio. Multi-host: set --config.distributed.coordinator_address=HOST:PORT
--config.distributed.num_processes=N --config.distributed.process_id=I on each host (TPU pods:
jax.distributed auto-detects; leave them empty).
"""
import logging
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from magnet_jax.util.cli import run, usage_error
from magnet_jax.util.user_input import writable_dir


def _fields_help() -> str:
    from magnet_jax.training.config import TrainConfig
    lines = []
    for section, names in TrainConfig.field_names().items():
        prefix = f"--config.{section}." if section else "--config."
        lines.append(f"  {prefix}{{{', '.join(names)}}}")
    return "config fields read by training:\n" + "\n".join(lines)


DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "magnet.py") + ":tiny"
# No default here: config_flags would load it (and apply the overrides) at definition time, outside _parse.
config_flags.DEFINE_config_file("config", None, "configs/magnet.py:NAME (NAME = a released model, tiny or "
                                "tiny_audio; default tiny)", lock_config=True)
flags.DEFINE_string("workdir", None, "checkpoints, metrics.jsonl, TensorBoard events and export/ go here")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    if not FLAGS.workdir:
        usage_error("--workdir is required: the folder for checkpoints and metrics (reused to resume)")
    logging.getLogger("magnet_jax").setLevel(logging.INFO)
    from magnet_jax.data.tokenize.codec_record import CodecMismatchError
    from magnet_jax.training import ConfigError, TrainConfig, train
    from magnet_jax.training.checkpoint import CheckpointError
    from magnet_jax.training.loop import TrainingDiverged
    try:
        cfg = TrainConfig.from_config(FLAGS.config)
    except ConfigError as e:
        usage_error(str(e))
    workdir = writable_dir("workdir", FLAGS.workdir)
    from magnet_jax.training.run_config import ConfigMismatchError, explain_mismatch, read_recorded, record_config
    recorded = read_recorded(workdir)
    if recorded is None and not (workdir / "checkpoints").is_dir():
        record_config(workdir, FLAGS.config)
    try:
        last = train(cfg, str(workdir))
    except ConfigMismatchError as e:          # intact checkpoints of another model
        usage_error(explain_mismatch(e, recorded, FLAGS.config, "the --config they were trained with"))
    except (FileNotFoundError, CodecMismatchError) as e:    # dataset missing / of another codec
        usage_error(str(e))
    except (CheckpointError, TrainingDiverged, FloatingPointError) as e:
        sys.stderr.write(f"train.py: error: {e}\n")
        sys.exit(1)
    if recorded is not None:
        record_config(workdir, FLAGS.config)
    print({k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()})


if __name__ == "__main__":
    run(main, tcmalloc=True, default_config=DEFAULT_CONFIG, help_extra=_fields_help,
        fields_hint="--help lists the config fields")
