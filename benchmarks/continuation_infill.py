"""Continuation and infill of held-out clips: are the kept and the generated parts both music, and the same music?

  python -m benchmarks.continuation_infill [--model=bundled] [--manifest=CORPUS/valid.jsonl] [--num_clips=8]

For each of ``--num_clips`` held-out clips (evenly spaced over the manifest, ``--seconds`` long, described by their
own description): a *continuation* (the first ``--prompt_seconds`` kept, the rest generated:
``MagnetPipeline.continuation``) and an *infill* (``--infill`` START,END regenerated, every other frame kept:
``MagnetPipeline.infill``), by the model and by a random-init LM of the same architecture (the same codec and text;
what "not music" sounds like through the same decoder). Each generated region is measured as
``tools/evaluate.py`` measures clips, and the same region of the real clip is measured alike:

* ``family_accuracy``: the instrument family of the region (evaluate's classifier, trained on ``--num_train``
  training clips) is the clip's;
* ``chroma_agreement``: cosine of the region's mean chroma with the kept part's (the same key / harmony carried
  across the seam; the real clip's own regions give the reference value);
* ``rms_ratio``: the region's loudness over the kept part's (silence or blow-ups show here).

Writes ``benchmarks/results/continuation_infill.json`` (with this machine and the date) and the figure
``benchmarks/figures/bundled_continuation_infill.png`` (the first clip: real, continuation, infill; generated
regions shaded); ``python -m benchmarks.tables continuation_infill`` prints the table.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
flags.DEFINE_string("model", "bundled", "model (MagnetPipeline.from_pretrained name or folder)")
flags.DEFINE_string("manifest", None, "held-out manifest (.jsonl with sidecar .json metadata; tools/build_corpus.py)")
flags.DEFINE_integer("num_clips", 8, "held-out clips (evenly spaced over the manifest)")
flags.DEFINE_integer("num_train", 200, "training clips for the family classifier (train.jsonl next to --manifest)")
flags.DEFINE_float("seconds", 10.0, "clip length")
flags.DEFINE_float("prompt_seconds", 4.0, "continuation: seconds kept from the start")
flags.DEFINE_list("infill", ["3", "6"], "infill: START,END seconds regenerated")
flags.DEFINE_integer("seed", 0, "generation seed")
flags.DEFINE_string("json", str(ROOT / "benchmarks" / "results" / "continuation_infill.json"), "results file")
flags.DEFINE_string("figure", str(ROOT / "benchmarks" / "figures" / "bundled_continuation_infill.png"), "figure")
FLAGS = flags.FLAGS


def _chroma_mean(wav, sr):
    from magnet_jax.eval.mir import chroma
    c = np.asarray(chroma(wav, sr))                                          # mean CQT chroma [12]
    return c / (np.linalg.norm(c) + 1e-9)


def region_facts(wav, sr, region, clf):
    """(predicted family, chroma cosine with the kept part, rms ratio) of ``wav``'s ``region`` (s, s)."""
    from magnet_jax.eval.adherence import measure
    a, b = int(region[0] * sr), int(region[1] * sr)
    gen = wav[a:b]
    kept = np.concatenate([wav[:a], wav[b:]])
    fam = clf.predict(measure(gen, sr)["features"][None])[0]
    cos = float(np.dot(_chroma_mean(gen, sr), _chroma_mean(kept, sr)))
    rms = float(np.sqrt(np.mean(gen ** 2)) / (np.sqrt(np.mean(kept ** 2)) + 1e-9))
    return fam, cos, rms


def figure(path, sr, title, panels):
    """``panels``: (name, wav, generated region or None); linear 0-4 kHz spectrograms, generated regions shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from magnet_jax.audio_files import spectrogram_db
    n_fft, hop, max_hz = 2048, 256, 4000.0
    top = int(max_hz / (sr / 2) * (n_fft // 2)) + 1
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels)), squeeze=False)
    for a, (name, wav, region) in zip(axes[:, 0], panels):
        spec = spectrogram_db(np.asarray(wav), n_fft=n_fft, hop=hop)[:top]
        a.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 80, vmax=spec.max(),
                 extent=(0, spec.shape[1] * hop / sr, 0, top * sr / n_fft))
        if region is not None:
            for x in region:
                a.axvline(x, color="white", lw=1.2, ls="--")
        a.set_xlim(0, len(panels[0][1]) / sr)
        a.set_ylabel("Hz")
        a.set_title(name, fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    del argv
    if not FLAGS.manifest:
        raise app.UsageError("--manifest=CORPUS/valid.jsonl is required (tools/build_corpus.py writes it)")
    from benchmarks.common import machine
    from magnet_jax.eval.report import _random_like, family_classifier, read_clip, read_manifest
    from magnet_jax.pipelines.magnet import MagnetPipeline

    pipe = MagnetPipeline.from_pretrained(FLAGS.model)
    sr = pipe.sample_rate
    seconds = min(FLAGS.seconds, pipe.window_seconds)
    start, end = (float(x) for x in FLAGS.infill)
    regions = {"continuation": (FLAGS.prompt_seconds, seconds), "infill": (start, end)}
    valid = read_manifest(FLAGS.manifest, FLAGS.num_clips)
    train = read_manifest(Path(FLAGS.manifest).with_name("train.jsonl"), FLAGS.num_train)
    t0 = time.time()
    clf = family_classifier(train, sr, seconds)
    lms = {"model": pipe, "random-init": _random_like(pipe, FLAGS.seed)}
    per = {f"{src}/{task}": [] for src in ("real", *lms) for task in regions}
    first = {}
    for i, r in enumerate(valid):
        clip = read_clip(r["path"], sr, seconds)
        text, fam = r["meta"]["description"], r["meta"]["instrument_family"]
        outs = {("real", t): clip for t in regions}
        for name, p in lms.items():
            outs[(name, "continuation")] = np.asarray(p.continuation(
                clip[:int(FLAGS.prompt_seconds * sr)], sr, [text], duration=seconds, seed=FLAGS.seed + i))[0, 0]
            outs[(name, "infill")] = np.asarray(p.infill(clip, sr, [text], start=start, end=end,
                                                         seed=FLAGS.seed + i))[0, 0]
        for (src, task), wav in outs.items():
            wav = np.asarray(wav, np.float32)[:clip.size]
            got, cos, rms = region_facts(wav, sr, regions[task], clf)
            per[f"{src}/{task}"].append(dict(family=fam, predicted_family=got, chroma_agreement=cos, rms_ratio=rms))
        if i == 0:
            first = dict(text=text, panels=[("held-out clip", clip, None),
                                            (f"continuation (first {FLAGS.prompt_seconds:g} s kept)",
                                             outs[("model", "continuation")], regions["continuation"]),
                                            (f"infill ({start:g}-{end:g} s generated)", outs[("model", "infill")],
                                             regions["infill"])])
        print(f"clip {i + 1}/{len(valid)} ({time.time() - t0:.0f} s)", flush=True)
    rows = {k: dict(n=len(v), family_accuracy=float(np.mean([c["family"] == c["predicted_family"] for c in v])),
                    chroma_agreement=float(np.mean([c["chroma_agreement"] for c in v])),
                    rms_ratio=float(np.median([c["rms_ratio"] for c in v])), clips=v) for k, v in per.items()}
    figure(FLAGS.figure, sr, f"{FLAGS.model}: {first['text']}", first["panels"])
    out = {"benchmark": "continuation_infill", "machine": machine(), "model": FLAGS.model,
           "settings": dict(num_clips=len(valid), seconds=seconds, prompt_seconds=FLAGS.prompt_seconds,
                            infill=[start, end], seed=FLAGS.seed, num_train=len(train),
                            family_chance=1 / len(clf.classes)),
           "rows": rows, "wall_s": time.time() - t0}
    Path(FLAGS.json).write_text(json.dumps(out, indent=1, default=str))
    for k, v in rows.items():
        print(f"{k:26s} family {v['family_accuracy']:.2f}  chroma agreement {v['chroma_agreement']:.3f}  "
              f"rms ratio {v['rms_ratio']:.2f}")


if __name__ == "__main__":
    app.run(main)
