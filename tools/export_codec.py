"""Export a codec trained by tools/train_codec.py (its EMA weights) for other tools to load.

  python tools/export_codec.py --workdir=DIR --out=OUT --format=auto|transformers|audiocraft|magnet_jax \
      [--config=configs/codec.py:NAME --config.any.field=value] [--noema]

transformers: OUT/config.json + OUT/model.safetensors (``EncodecModel.from_pretrained(OUT)``);
audiocraft: OUT/compression_state_dict.bin (``audiocraft.models.loaders.load_compression_model``).
magnet_jax: OUT/config.json + OUT/model.safetensors of a frame codec (configs/codec.py:bundled); auto picks
magnet_jax for a frame codec, transformers for an EnCodec.
All are read by magnet_jax.convert.encodec.load_encodec and tools/tokenize_dataset.py --codec=OUT.
--config: the configuration the codec was trained with (default: WORKDIR/config.json when the trainer
wrote one).
"""
from pathlib import Path

from absl import flags
from ml_collections import ConfigDict, config_flags

from magnet_jax.util.cli import run, usage_error
from magnet_jax.util.user_input import json_file, output_dir

config_flags.DEFINE_config_file("config", None, "configs/codec.py:NAME the codec was trained with", lock_config=True)
flags.DEFINE_string("workdir", None, "the training workdir (WORKDIR/checkpoints)")
flags.DEFINE_string("out", None, "folder to write")
flags.DEFINE_enum("format", "auto", ["auto", "transformers", "audiocraft", "magnet_jax"],
                  "checkpoint layout to write (auto: magnet_jax for a frame codec, transformers for an EnCodec)")
flags.DEFINE_bool("ema", True, "export the EMA generator (else the raw weights of the last step)")
flags.DEFINE_bool("overwrite", False, "replace what --out holds already (datasets tokenized with it then point at "
                  "another codec)")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    if not FLAGS.workdir or not FLAGS.out:
        usage_error("--workdir (the training folder) and --out (the folder to write) are required")
    workdir = Path(FLAGS.workdir)
    if not (workdir / "checkpoints").is_dir():
        usage_error(f"{workdir} has no checkpoints/ folder: pass the --workdir of tools/train_codec.py")
    output_dir("out", FLAGS.out, overwrite=FLAGS.overwrite,
               why="datasets tokenized with that codec then point at this one")
    saved = workdir / "config.json"
    recorded = ConfigDict(json_file("workdir", saved)) if saved.is_file() else None
    cfg = FLAGS.config
    if cfg is None:
        if recorded is None:
            usage_error(f"{workdir} has no config.json: pass the --config=configs/codec.py:NAME you trained with")
        cfg = recorded
    from magnet_jax.codec_training.export import load_trained
    from magnet_jax.convert.encodec_export import export_codec
    from magnet_jax.training.run_config import ConfigMismatchError, explain_mismatch
    try:
        trained = load_trained(cfg, workdir, ema=FLAGS.ema)
    except (AttributeError, KeyError, TypeError) as e:
        usage_error(f"the config does not describe a codec ({type(e).__name__}: {e}); pass the training --config")
    except ConfigMismatchError as e:
        usage_error(explain_mismatch(e, recorded, cfg, "the --config it was trained with"))
    if trained is None:
        usage_error(f"{workdir}/checkpoints holds no checkpoint yet")
    try:
        out = export_codec(trained, FLAGS.out, FLAGS.format)
    except ValueError as e:
        usage_error(str(e))
    print(f"wrote the codec to {out}")


if __name__ == "__main__":
    run(main)
