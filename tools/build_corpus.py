"""Build the bundled model's corpus: music21 scores rendered with FluidSynth + a GM soundfont.

  python tools/build_corpus.py --out_dir=data/corpus [--sample_rate=16000] [--max_works=0] [--renders_per_work=1]

Writes OUT/train/*.wav|json, OUT/valid/*.wav|json (whole works held out), OUT/train.jsonl, OUT/valid.jsonl
(audiocraft manifests) and OUT/corpus_report.json. Needs `apt-get install fluidsynth fluid-soundfont-gm` and
`pip install music21`. Re-running resumes (finished clips are kept).
"""
from __future__ import annotations

from absl import flags

from magnet_jax.util.cli import run, usage_error

flags.DEFINE_string("out_dir", None, "output folder", required=True)
flags.DEFINE_integer("sample_rate", 16000, "corpus sample rate (Hz)")
flags.DEFINE_float("max_seconds", 30.0, "clips are trimmed to this length")
flags.DEFINE_integer("max_works", 0, "0 = every selected work")
flags.DEFINE_integer("renders_per_work", 1, "renderings per work (other instrument / tempo / key)")
flags.DEFINE_float("valid_fraction", 0.1, "fraction of works held out")
flags.DEFINE_bool("render_missing", True, "False: only write the manifests / report of the clips already "
                  "rendered (use a partial corpus)")
flags.DEFINE_integer("seed", 0, "seed of the selection, instruments, tempi and transpositions")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}")
    from magnet_jax.bundled import CorpusOptions, build_corpus
    try:
        build_corpus(CorpusOptions(out_dir=FLAGS.out_dir, sample_rate=FLAGS.sample_rate, max_seconds=FLAGS.max_seconds,
                                   renders_per_work=FLAGS.renders_per_work, valid_fraction=FLAGS.valid_fraction,
                                   max_works=FLAGS.max_works, seed=FLAGS.seed,
                                   render_missing=FLAGS.render_missing))
    except FileNotFoundError as e:
        usage_error(str(e))


if __name__ == "__main__":
    run(main)
