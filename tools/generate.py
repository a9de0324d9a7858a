"""Generate music / sound with MAGNeT: one WAV and one spectrogram PNG per clip.

  python tools/generate.py --model=facebook/magnet-small-10secs --text="happy rock" --duration=10
  python tools/generate.py --model=config:tiny --text="calm piano" --out_dir=out      # random init, offline
  python tools/generate.py --model=DIR --text_file=prompts.txt --batch_size=4 --span_arrangement=stride1
  python tools/generate.py --model=... --text="jazz" --prompt_wav=intro.wav --duration=10         # continue
  python tools/generate.py --model=facebook/musicgen-melody --text="jazz" --melody=tune.wav        # melody
  python tools/generate.py --model=... --text="drums" --infill_wav=song.wav --infill_start=2 --infill_end=4
  python tools/generate.py --model=facebook/magnet-small-10secs --text="jazz"           # rescoring (Eq. 5)
      --rescorer=facebook/musicgen-small --rescorer_weight=0.8
  python tools/generate.py --model=facebook/magnet-small-10secs --text="jazz"           # MusicGen 3 s, then MAGNeT
      --rescorer=facebook/musicgen-small --hybrid_prefix_seconds=3

--model: a hub id, a local folder (state_dict.bin + compression_state_dict.bin), or config:NAME.
No --text / --text_file / --unconditional: the model's example description, a text it was trained to follow (the
released models': "80s electronic track with melodic synthesizers and a driving beat"; the bundled model's: one in
its training corpus' wording, from its bundled.json), logged on one line.
--offline_fallback=default (bundled: the small model this project trained offline, magnet_jax/bundled):
used only when the hub cannot be reached and the model is not cached.
Files are named NNN_text_seedS.{wav,png}; existing files are never overwritten unless --overwrite.
Every GenerationConfig field is a flag of the same name (unset = the model's default).
"""
from __future__ import annotations

import dataclasses
import sys
import typing

from absl import flags

from magnet_jax.decoding import GenerationConfig
from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.util.cli import run, usage_error

flags.DEFINE_string("model", "facebook/magnet-small-10secs", "hub id | local dir | config:NAME (random init)")
flags.DEFINE_multi_string("text", None, "a description (repeatable; default: the model's example description)")
flags.DEFINE_string("text_file", None, "one description per line (UTF-8)")
flags.DEFINE_boolean("unconditional", False, "generate without text")
flags.DEFINE_float("duration", None, "seconds (default: the model's window; longer = windowed long-form)")
flags.DEFINE_float("extend_stride", None, "long-form: new seconds per window (default half the window)")
flags.DEFINE_integer("batch_size", 4, "clips per generate call")
flags.DEFINE_integer("num_samples", 1, "clips per description")
flags.DEFINE_integer("seed", 0, "PRNG seed")
flags.DEFINE_string("out_dir", "out", "where WAVs and PNGs go")
flags.DEFINE_boolean("overwrite", False, "replace existing output files of the same name")
flags.DEFINE_string("offline_fallback", None, "model to use if the hub is unreachable and --model is not cached; "
                    "'default' = the project's offline model (bundled)")
flags.DEFINE_string("t5", None, "T5 hub id or local folder (default: the one the checkpoint names)")
flags.DEFINE_string("codec", None, "EnCodec hub id or local folder (default: the one the checkpoint names)")
flags.DEFINE_string("prompt_wav", None, "audio to continue")
flags.DEFINE_string("melody", None, "MusicGen-melody: audio whose chroma conditions the generation")
flags.DEFINE_string("infill_wav", None, "audio whose [infill_start, infill_end) seconds are regenerated")
flags.DEFINE_float("infill_start", None, "infill region start (s)")
flags.DEFINE_float("infill_end", None, "infill region end (s)")
flags.DEFINE_string("rescorer", None, "MusicGen (hub id | local dir | config:NAME) sharing the codec and T5: rescores "
                    "with --rescorer_weight, writes the prefix of --hybrid_prefix_seconds")
flags.DEFINE_string("adapter", None, "a LoRA adapter saved alone (WORKDIR/export of a --lora_rank fine-tune) "
                    "applied to --model at load")
flags.DEFINE_float("hybrid_prefix_seconds", None, "hybrid: --rescorer's MusicGen generates these first seconds, "
                   "MAGNeT continues")
flags.DEFINE_boolean("allow_large", False, "lift the soft caps on one run (1000 clips, 600 s per clip)")
FLAGS = flags.FLAGS


def _define_generation_flags() -> tuple[str, ...]:
    """One flag per GenerationConfig field (audiocraft names); a new knob there is a new flag here."""
    hints = typing.get_type_hints(GenerationConfig)
    names = []
    for f in dataclasses.fields(GenerationConfig):
        kind, doc = hints[f.name], f"GenerationConfig.{f.name} (model default if unset)"
        if type(None) in typing.get_args(kind):                       # an optional knob: its flag is its type
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if kind is bool:
            flags.DEFINE_boolean(f.name, None, doc)
        elif kind is int:
            flags.DEFINE_integer(f.name, None, doc)
        elif kind is float:
            flags.DEFINE_float(f.name, None, doc)
        elif typing.get_origin(kind) is tuple:
            flags.DEFINE_list(f.name, None, doc + ", comma-separated, e.g. 20,10,10,10")
        else:
            flags.DEFINE_string(f.name, None, doc)
        names.append(f.name)
    return tuple(names)


KNOBS = _define_generation_flags()


def _define_musicgen_flags() -> tuple[str, ...]:
    """MusicGen knobs (audiocraft's names) that MAGNeT's GenerationConfig has not; used by MusicGen checkpoints."""
    names = []
    for f in dataclasses.fields(MusicGenGenerationConfig):
        if f.name in KNOBS or f.name == "extend_stride":
            continue
        define = flags.DEFINE_boolean if f.type in (bool, "bool") else flags.DEFINE_float
        define(f.name, None, f"MusicGen: MusicGenGenerationConfig.{f.name} (model default if unset)")
        names.append(f.name)
    flags.DEFINE_float("temperature", None, "MusicGen's name for --temp (audiocraft MusicGen.set_generation_params)")
    return tuple(names)


MUSICGEN_KNOBS = _define_musicgen_flags()


def _overrides() -> dict:
    out = {k: getattr(FLAGS, k) for k in KNOBS if getattr(FLAGS, k) is not None}
    hints = typing.get_type_hints(GenerationConfig)
    for k, v in out.items():
        if typing.get_origin(hints[k]) is tuple:
            try:
                out[k] = tuple(int(s) for s in v)
            except ValueError:
                usage_error(f"--{k}={','.join(v)}: give integers, e.g. --{k}=20,10,10,10")
    if FLAGS.temperature is not None:
        if "temp" in out and out["temp"] != FLAGS.temperature:
            usage_error("--temperature is --temp: give one of them")
        out["temp"] = FLAGS.temperature
    try:
        GenerationConfig().replace(**{k: v for k, v in out.items() if k != "decoding_steps"})
    except ValueError as e:
        usage_error(str(e))
    mg = {k: getattr(FLAGS, k) for k in MUSICGEN_KNOBS if getattr(FLAGS, k) is not None}
    try:
        MusicGenGenerationConfig(**mg)
    except ValueError as e:
        usage_error(str(e))
    return {**out, **mg}


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag=value (see --help)")
    from magnet_jax import hub
    from magnet_jax.audio_files import NonFiniteAudioError
    from magnet_jax.jobs.generate import GenerationRequest, run_to_files
    req = GenerationRequest(
        model=FLAGS.model, texts=FLAGS.text or [], text_file=FLAGS.text_file, unconditional=FLAGS.unconditional,
        duration=FLAGS.duration, extend_stride=FLAGS.extend_stride, batch_size=FLAGS.batch_size,
        num_samples=FLAGS.num_samples, seed=FLAGS.seed, out_dir=FLAGS.out_dir, overwrite=FLAGS.overwrite,
        offline_fallback=FLAGS.offline_fallback, prompt_wav=FLAGS.prompt_wav, infill_wav=FLAGS.infill_wav,
        infill_start=FLAGS.infill_start, infill_end=FLAGS.infill_end, overrides=_overrides(), t5=FLAGS.t5,
        codec=FLAGS.codec, melody=FLAGS.melody, rescorer=FLAGS.rescorer, adapter=FLAGS.adapter,
        hybrid_prefix_seconds=FLAGS.hybrid_prefix_seconds, allow_large=FLAGS.allow_large)
    try:
        run_to_files(req, log=print)
    except NonFiniteAudioError as e:     # not the user's input: a failed generation, exit 1
        sys.stderr.write(f"generate.py: error: {e}\n")
        sys.exit(1)
    except (ValueError, FileNotFoundError, hub.HubError) as e:
        usage_error(" ".join(str(e).split()))


if __name__ == "__main__":
    run(main)
