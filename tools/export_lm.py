"""Export a trained LM (MAGNeT, Hybrid-MAGNeT, MusicGen) for other tools to load.

  python tools/export_lm.py --workdir=DIR --out=OUT [--format=audiocraft|magnet_jax] [--codec=ID|FOLDER|none] \
      [--t5=NAME] [--noema] [--overwrite]
  python tools/export_lm.py --model=ID_OR_FOLDER --out=OUT ...

--workdir: a tools/train.py workdir: its EMA weights (WORKDIR/export when it is the newest, else the newest
checkpoint); the T5, kind and codec come from WORKDIR/config.json. --model: an exported magnet-jax LM folder or an
audiocraft checkpoint (hub id or folder) instead.
audiocraft: OUT/state_dict.bin (``best_state`` + a complete ``xp.cfg``, as audiocraft's export_lm) and
OUT/compression_state_dict.bin: audiocraft 1.3.0's ``MAGNeT.get_pretrained(OUT)`` / ``MusicGen.get_pretrained(OUT)``
load them. --codec (default: the codec the LM was trained on): a hub id is written as a reference (``{'pretrained':
ID}``, as the released MAGNeT repos; audiocraft downloads it), a local EnCodec (tools/export_codec.py) as its
weights; ``none`` writes the LM only. The magnet-jax frame codec has no audiocraft form: that is refused.
magnet_jax: OUT/magnet_jax_lm.safetensors + OUT/magnet_jax_config.json (``convert.load_lm_safetensors``).
Both are read back by ``magnet_jax.convert.load_audiocraft_checkpoint(OUT)``.
"""
from pathlib import Path

from absl import flags

from magnet_jax.util.cli import run, usage_error
from magnet_jax.util.user_input import one_line, output_dir

flags.DEFINE_string("workdir", None, "a tools/train.py workdir (config.json + checkpoints/ or export/)")
flags.DEFINE_string("model", None, "instead of --workdir: an exported LM folder, or an audiocraft checkpoint "
                    "(hub id or folder)")
flags.DEFINE_string("out", None, "folder to write")
flags.DEFINE_enum("format", "audiocraft", ["audiocraft", "magnet_jax"], "checkpoint layout to write")
flags.DEFINE_string("codec", "", "audiocraft format: the codec to write (hub id, EnCodec folder, or none); default "
                    "the one the LM was trained on")
flags.DEFINE_string("t5", "", "the T5 the LM was trained with (audiocraft name, e.g. t5-base); default what the "
                    "workdir / model records")
flags.DEFINE_bool("ema", True, "--workdir: the EMA weights (else the raw weights of the newest checkpoint)")
flags.DEFINE_bool("overwrite", False, "replace what --out holds already")
FLAGS = flags.FLAGS
KIND_RATES = {"music": 32000, "audio": 16000}       # the released codecs', when no codec is read here


def _from_workdir():
    """(lm, facts dict, what was read) of --workdir."""
    from magnet_jax.training.trained_lm import load_trained_lm, workdir_facts
    workdir = Path(FLAGS.workdir).expanduser()
    if not workdir.is_dir():
        usage_error(f"--workdir={FLAGS.workdir!r} is not a folder: pass the --workdir of tools/train.py")
    trained = load_trained_lm(workdir, ema=FLAGS.ema)
    if trained is None:
        usage_error(f"{workdir} holds no checkpoint and no export yet: train first")
    facts = workdir_facts(trained)
    facts["extra"] = {"step": trained.step, "weights": trained.weights}
    return trained.lm, facts, f"{trained.origin} (step {trained.step}, {trained.weights})"


def _from_model():
    from magnet_jax.convert import load_audiocraft_checkpoint
    from magnet_jax.convert.audiocraft_export import CODEC_FILE
    ck = load_audiocraft_checkpoint(FLAGS.model, cache=False)
    local = Path(ck.codec_source)
    codec = str(local) if (local / CODEC_FILE).is_file() else None     # the folder's audiocraft codec
    return ck.lm, {"t5": ck.t5_name, "kind": ck.kind, "codec": codec, "sample_rate": KIND_RATES[ck.kind],
                   "channels": ck.channels, "training": {}, "extra": {}}, FLAGS.model


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    if bool(FLAGS.workdir) == bool(FLAGS.model) or not FLAGS.out:
        usage_error("pass --out (the folder to write) and one of --workdir (a tools/train.py folder) or --model (an "
                    "exported LM folder or audiocraft checkpoint)")
    if FLAGS.codec and FLAGS.format != "audiocraft":
        usage_error("--codec applies to --format=audiocraft (a magnet_jax LM folder holds the LM only)")
    out = output_dir("out", FLAGS.out, overwrite=FLAGS.overwrite)
    from magnet_jax.convert import CheckpointError, save_lm_safetensors
    from magnet_jax.convert.audiocraft_export import export_audiocraft
    from magnet_jax.convert.audiocraft_xp import ExportFacts
    from magnet_jax.convert.encodec_config import CodecFormatError
    from magnet_jax.convert.lm_files import DamagedFileError
    from magnet_jax.hub import HubError
    from magnet_jax.model.families import family_of
    try:
        lm, facts, source = _from_workdir() if FLAGS.workdir else _from_model()
        t5 = FLAGS.t5 or facts["t5"]
        if FLAGS.format == "magnet_jax":
            extra = {**facts["extra"], "t5": t5, "kind": facts["kind"], "channels": facts["channels"]}
            save_lm_safetensors(lm, out, {k: v for k, v in extra.items() if v is not None})
            names = ["magnet_jax_lm.safetensors", "magnet_jax_config.json"]
        else:
            codec = FLAGS.codec or facts["codec"]
            if codec is None:
                usage_error(f"--model={FLAGS.model!r} has no compression_state_dict.bin: pass --codec=the codec it "
                            f"was trained on (hub id or EnCodec folder), or --codec=none for the LM only")
            ef = ExportFacts(t5, facts["kind"], facts["sample_rate"], facts["channels"], training=facts["training"])
            names = [p.name for p in export_audiocraft(lm, out, ef, codec=codec)]
    except (CheckpointError, CodecFormatError, DamagedFileError, HubError) as e:
        usage_error(one_line(e))
    print(f"wrote the {family_of(lm.config).name} LM of {source} to {out}: {', '.join(names)}")


if __name__ == "__main__":
    run(main)
