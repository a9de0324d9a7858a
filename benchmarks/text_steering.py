"""Does the text steer? The same seeds generated from descriptions that differ only in the instrument (one per
family), and only in the tempo, with classifier-free guidance at the model's default (``cfg_on``), at
audiocraft's music default 10 -> 1 (``cfg_10``, when the model's differs) and off (coefficient 1, ``cfg_off``);
the clips judged by tools/evaluate.py's measurements (family classifier trained on real training clips, librosa
beat tracking). JSON: a family confusion table per CFG setting (with its coefficients), measured vs asked bpm.

  python -m benchmarks.text_steering --model=bundled --train_manifest=CORPUS/train.jsonl [--seeds=4]
"""
from __future__ import annotations

import time

import numpy as np
from absl import app, flags

from benchmarks.common import machine, write_json
from magnet_jax.decoding.config import GenerationConfig

flags.DEFINE_string("model", "bundled", "MagnetPipeline.from_pretrained name or folder")
flags.DEFINE_string("train_manifest", None, "training manifest (sidecar metadata) the family classifier trains on")
flags.DEFINE_integer("num_train", 200, "training clips for the family classifier")
flags.DEFINE_integer("seeds", 4, "seeds per description")
flags.DEFINE_float("seconds", 10.0, "clip length")
flags.DEFINE_string("name", "text_steering", "results/NAME.json")
FLAGS = flags.FLAGS

# The most common instrument of each family in the bundled model's training split, in its corpus' wording.
INSTRUMENTS = {"brass": "trombone", "guitar": "acoustic guitar", "keyboard": "piano", "mallet": "marimba",
               "organ": "accordion", "pipe": "recorder", "reed": "oboe", "strings": "cello", "synth": "warm synth pad"}
FAMILY_TEXT = "baroque chorale played on {instrument}, 76 bpm, E major"
TEMPI = (60, 90, 120, 150)
TEMPO_TEXT = "baroque chorale played on marimba, {bpm} bpm, E major"


def _settings(default) -> dict:
    """{run name: CFG coefficients}: the model's default, audiocraft's music default (if another), off."""
    runs = {"cfg_on": dict(max_cfg_coef=default.max_cfg_coef, min_cfg_coef=default.min_cfg_coef)}
    audiocraft = GenerationConfig.music()
    if (audiocraft.max_cfg_coef, audiocraft.min_cfg_coef) != (default.max_cfg_coef, default.min_cfg_coef):
        runs[f"cfg_{audiocraft.max_cfg_coef:g}"] = dict(max_cfg_coef=audiocraft.max_cfg_coef,
                                                        min_cfg_coef=audiocraft.min_cfg_coef)
    runs["cfg_off"] = dict(max_cfg_coef=1.0, min_cfg_coef=1.0)
    return runs


def _generate(pipe, texts, seeds, seconds, over):
    out = []
    for s in range(seeds):
        wav = pipe.generate(texts, duration=seconds, seed=s, **over)
        out.append(np.asarray(wav)[:, 0])
    return out                                    # [seed][text] -> audio


def main(argv):
    del argv
    from magnet_jax.eval.adherence import measure
    from magnet_jax.eval.report import family_classifier, read_manifest
    from magnet_jax.pipelines.magnet import MagnetPipeline
    pipe = MagnetPipeline.from_pretrained(FLAGS.model)
    sr = pipe.sample_rate
    train = read_manifest(FLAGS.train_manifest, FLAGS.num_train)
    clf = family_classifier(train, sr, FLAGS.seconds)
    families = list(INSTRUMENTS)
    result = {"model": FLAGS.model, "seeds": FLAGS.seeds, "seconds": FLAGS.seconds, "families": families,
              "family_text": FAMILY_TEXT, "instruments": INSTRUMENTS, "tempo_text": TEMPO_TEXT, "runs": {}}
    for name, over in _settings(pipe.generation).items():
        t0 = time.time()
        clips = _generate(pipe, [FAMILY_TEXT.format(instrument=INSTRUMENTS[f]) for f in families], FLAGS.seeds,
                          FLAGS.seconds, over)
        confusion = np.zeros((len(families), len(clf.classes)), int)
        for per_seed in clips:
            pred = clf.predict(np.stack([measure(w, sr)["features"] for w in per_seed]))
            for i, p in enumerate(pred):
                confusion[i, list(clf.classes).index(p)] += 1
        tempo_clips = _generate(pipe, [TEMPO_TEXT.format(bpm=b) for b in TEMPI], FLAGS.seeds, FLAGS.seconds, over)
        measured = [[measure(w, sr)["bpm"] for w in per_seed] for per_seed in tempo_clips]
        correct = sum(confusion[i, list(clf.classes).index(f)] for i, f in enumerate(families))
        result["runs"][name] = {
            **over, "confusion": confusion.tolist(), "classes": list(clf.classes),
            "family_accuracy": correct / confusion.sum(), "family_chance": 1 / len(clf.classes),
            "distinct_predictions": int(sum(confusion.sum(0) > 0)),
            "tempo_asked": list(TEMPI), "tempo_measured": measured,
            "tempo_spearman": _spearman(np.tile(TEMPI, FLAGS.seeds), np.ravel(measured)),
            "seconds_wall": time.time() - t0}
        print(name, {k: v for k, v in result["runs"][name].items() if k not in ("confusion", "tempo_measured")})
    result["machine"] = machine()
    write_json(FLAGS.name, result)


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr
    return float(spearmanr(a, b).statistic) if np.ptp(b) > 0 else float("nan")


if __name__ == "__main__":
    app.run(main)
