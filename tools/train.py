"""Train MAGNeT on a tokenized dataset. Running it again on the same workdir resumes.

  python tools/train.py --config=configs/magnet.py:tiny --workdir=DIR --config.data_dir=TFDS_DIR \
      --config.total_steps=N --config.checkpoint_every=M --config.seed=S [--config.any.field=value]

NAME after ``configs/magnet.py:`` is a released model (magnet_small_10secs, ... audio_magnet_medium) or
tiny / tiny_audio. Multi-host: set --config.distributed.coordinator_address=HOST:PORT
--config.distributed.num_processes=N --config.distributed.process_id=I on each host (TPU pods:
jax.distributed auto-detects; leave them empty).
"""
import logging
import re
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags


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


def _usage_error(message: str):
    """A user error: one line on stderr, exit 2 (absl's UsageError would print the whole usage, exit 1)."""
    sys.stderr.write(f"train.py: error: {message}\n")
    sys.exit(2)


def _parse(argv):
    """absl's flag parsing with --help exiting 0 and a bad --config.* override as one line, exit 2."""
    if any(a in ("--help", "-h", "--helpshort", "-?") for a in argv[1:]):
        print(sys.modules["__main__"].__doc__ + "\n" + _fields_help() + "\n\n" + FLAGS.main_module_help())
        sys.exit(0)
    if not any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
        argv = [argv[0], f"--config={DEFAULT_CONFIG}", *argv[1:]]
    try:
        return FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        # ml_collections reports an unknown field as AttributeError("'name'\nDid you mean ...") and a failing
        # get_config as the whole traceback text: keep its last line.
        if isinstance(e, (AttributeError, KeyError)):
            name = re.search(r"\w+", str(e))
            hint = re.search(r'Did you mean "(\w+)"', str(e))
            _usage_error(f"unknown config field {name.group(0) if name else str(e)!r}"
                         + (f" (did you mean {hint.group(1)!r}?)" if hint else "") + "; --help lists the fields")
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        text = (lines[-1] if "Traceback" in str(e) else " ".join(lines)).replace("\\'", "'").strip("\"'")
        _usage_error(f"bad flag: {text} (--help lists the config fields)")


def main(argv):
    if len(argv) > 1:
        _usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    if not FLAGS.workdir:
        _usage_error("--workdir is required: the folder for checkpoints and metrics (reused to resume)")
    logging.getLogger("magnet_jax").setLevel(logging.INFO)
    from magnet_jax.data.tokenize.codec_record import CodecMismatchError
    from magnet_jax.training import ConfigError, TrainConfig, train
    from magnet_jax.training.checkpoint import CheckpointError
    from magnet_jax.training.loop import TrainingDiverged
    try:
        cfg = TrainConfig.from_config(FLAGS.config)
    except ConfigError as e:
        _usage_error(str(e))
    try:
        last = train(cfg, FLAGS.workdir)
    except (FileNotFoundError, CodecMismatchError) as e:    # dataset missing / of another codec
        _usage_error(str(e))
    except (CheckpointError, TrainingDiverged, FloatingPointError) as e:
        sys.stderr.write(f"train.py: error: {e}\n")
        sys.exit(1)
    print({k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()})


if __name__ == "__main__":
    app.run(main, flags_parser=_parse)
