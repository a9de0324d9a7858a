"""Fine-tune a model on your audio in one command: tokenize (with the model's codec, 10% of the files held out),
train (all weights, or LoRA adapters), held-out loss per stage before / after, and a model folder to generate with.

  python tools/finetune.py --model=ID_OR_FOLDER --audio_dir=DIR --workdir=W [--lora_rank=R] [--steps=N] \\
      [--duration=S] [--description=TEXT]
  python tools/generate.py --model=W/export --text="..."

--manifest=FILE.jsonl (lines with path, description) instead of --audio_dir. Descriptions: a sidecar .json or .txt
next to each audio file, else --description, else the file name. Running the same command again resumes
(tokenization is skipped when done, training continues from its checkpoints; a larger --steps trains further).
The library side: magnet_jax/jobs/finetune.py.
"""
import logging

from absl import flags

from magnet_jax.util.cli import run, usage_error

flags.DEFINE_string("model", None, "the model to fine-tune: hub id, local folder, or 'bundled'")
flags.DEFINE_string("audio_dir", None, "folder of audio files (with optional .json / .txt sidecar descriptions)")
flags.DEFINE_string("manifest", None, "instead of --audio_dir: JSONL lines with path and description")
flags.DEFINE_string("workdir", None, "where tokens, checkpoints and export/ go (reused to resume)")
flags.DEFINE_integer("lora_rank", 0, "LoRA adapters of this rank (0 = fine-tune all weights)")
flags.DEFINE_integer("steps", 500, "training steps (in total: re-running with more continues)")
flags.DEFINE_float("duration", None, "training window in seconds (default: the model's)")
flags.DEFINE_string("description", None, "description of files without a sidecar (default: their file name)")
flags.DEFINE_integer("batch_size", 4, "clips per step")
flags.DEFINE_float("learning_rate", None, "default 1e-4 (all weights) / 1e-3 (LoRA)")
flags.DEFINE_integer("seed", 0, "seed of the held-out split, the adapters and the data order")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    if not FLAGS.model or not FLAGS.workdir:
        usage_error("pass --model (hub id or folder) and --workdir (a folder for this run; reused to resume)")
    if bool(FLAGS.audio_dir) == bool(FLAGS.manifest):
        usage_error("pass one of --audio_dir (a folder of audio) or --manifest (a JSONL file)")
    logging.getLogger("magnet_jax").setLevel(logging.INFO)
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()
    from magnet_jax.data.tokenize.codec_record import CodecMismatchError
    from magnet_jax.jobs.finetune import FinetuneOptions, format_summary, run_finetune
    from magnet_jax.training import ConfigError
    from magnet_jax.training.checkpoint import CheckpointError, ConfigMismatchError
    from magnet_jax.util.user_input import writable_dir
    opts = FinetuneOptions(steps=FLAGS.steps, lora_rank=FLAGS.lora_rank, duration=FLAGS.duration,
                           description=FLAGS.description, batch_size=FLAGS.batch_size,
                           learning_rate=FLAGS.learning_rate, seed=FLAGS.seed)
    opts.check()
    workdir = writable_dir("workdir", FLAGS.workdir)
    try:
        summary = run_finetune(FLAGS.model, workdir, audio_dir=FLAGS.audio_dir, manifest=FLAGS.manifest,
                               options=opts)
    except (ConfigError, CodecMismatchError, FileNotFoundError) as e:
        usage_error(" ".join(str(e).split()))
    except ConfigMismatchError as e:
        usage_error(f"{workdir}/lm holds checkpoints of another configuration ({' '.join(str(e).split())[:300]}): "
                    f"use another --workdir")
    except CheckpointError as e:
        usage_error(" ".join(str(e).split()))
    print(format_summary(summary))


if __name__ == "__main__":
    run(main, tcmalloc=True)
