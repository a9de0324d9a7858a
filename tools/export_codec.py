"""Export a codec trained by tools/train_codec.py (its EMA weights) for other tools to load.

  python tools/export_codec.py --workdir=DIR --out=OUT --format=transformers|audiocraft \
      [--config=configs/codec.py:NAME --config.any.field=value] [--noema]

transformers: OUT/config.json + OUT/model.safetensors (``EncodecModel.from_pretrained(OUT)``);
audiocraft: OUT/compression_state_dict.bin (``audiocraft.models.loaders.load_compression_model``).
Both are read by magnet_jax.codec.load_encodec and tools/tokenize_dataset.py --codec=OUT.
--config: the configuration the codec was trained with (default: WORKDIR/config.json when the trainer
wrote one).
"""
import json
from pathlib import Path

from absl import flags
from ml_collections import ConfigDict, config_flags

from magnet_jax.util.cli import run, usage_error

config_flags.DEFINE_config_file("config", None, "configs/codec.py:NAME the codec was trained with", lock_config=True)
flags.DEFINE_string("workdir", None, "the training workdir (WORKDIR/checkpoints)")
flags.DEFINE_string("out", None, "folder to write")
flags.DEFINE_enum("format", "transformers", ["transformers", "audiocraft"], "checkpoint layout to write")
flags.DEFINE_bool("ema", True, "export the EMA generator (else the raw weights of the last step)")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    if not FLAGS.workdir or not FLAGS.out:
        usage_error("--workdir (the training folder) and --out (the folder to write) are required")
    workdir = Path(FLAGS.workdir)
    if not (workdir / "checkpoints").is_dir():
        usage_error(f"{workdir} has no checkpoints/ folder: pass the --workdir of tools/train_codec.py")
    cfg = FLAGS.config
    if cfg is None:
        saved = workdir / "config.json"
        if not saved.is_file():
            usage_error(f"{workdir} has no config.json: pass the --config=configs/codec.py:NAME you trained with")
        cfg = ConfigDict(json.loads(saved.read_text()))
    from magnet_jax.codec_training.export import load_trained
    from magnet_jax.convert.encodec_export import export_codec
    try:
        trained = load_trained(cfg, workdir, ema=FLAGS.ema)
    except (AttributeError, KeyError, TypeError) as e:
        usage_error(f"the config does not describe a codec ({type(e).__name__}: {e}); pass the training --config")
    if trained is None:
        usage_error(f"{workdir}/checkpoints holds no checkpoint yet")
    try:
        out = export_codec(trained, FLAGS.out, FLAGS.format)
    except ValueError as e:
        usage_error(str(e))
    print(f"wrote {FLAGS.format} codec to {out}")


if __name__ == "__main__":
    run(main)
