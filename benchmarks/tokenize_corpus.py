"""Offline tokenization throughput: hours of audio tokenized per hour, end to end, on this machine.

**Ours**: ``magnet_jax.data.tokenize.tokenize_corpus`` on an audiocraft manifest -- read (soundfile),
down-mix, resample (soxr HQ), segment (30 s), encode (jitted Flax EnCodec, batches of equal-length
segments), write the TFDS ArrayRecord dataset and the report. Measured twice in one process:
*cold* (includes JAX compilation of the few segment shapes) and *warm* (``overwrite=True`` rebuild:
what a long job converges to, since compilation is a fixed cost).

**Reference**: the same files in a plain Python loop with transformers' ``EncodecModel``
(read with soundfile, mono mix, soxr resample, ``model.encode`` of the whole file at the
bandwidth that uses all codebooks); nothing is written.

Both use the facebook/encodec_32khz architecture with the same random weights (the hub is not
needed; throughput does not depend on the weights) and every core (``--threads``). The corpus is
generated: chords + noise, wav / flac, 22.05 / 32 / 44.1 / 48 kHz, mono / stereo.

    python -m benchmarks.tokenize_corpus            # ~6 min of audio
    python -m benchmarks.tokenize_corpus --minutes 2  # quicker look

Reported: audio hours per wall-clock hour (= audio seconds per second) for each, and the ratio
ours / reference. Writes ``benchmarks/results/tokenize.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (seconds, sample rate, channels, extension) per file; scaled to --minutes
_LAYOUT = [(75, 44100, 2, "flac"), (48, 48000, 2, "wav"), (62, 32000, 1, "wav"), (33, 22050, 1, "flac"),
           (90, 44100, 2, "wav"), (24, 48000, 1, "flac"), (30, 32000, 2, "flac")]


def make_corpus(d: str, minutes: float) -> tuple[str, float]:
    import numpy as np
    import soundfile as sf
    scale = minutes * 60 / sum(x[0] for x in _LAYOUT)
    rng = np.random.default_rng(0)
    lines, total = [], 0.0
    for i, (sec, sr, ch, ext) in enumerate(_LAYOUT):
        sec = max(5.0, round(sec * scale, 2))
        t = np.arange(int(sec * sr)) / sr
        chans = []
        for c in range(ch):
            f0 = rng.uniform(110, 440)
            x = sum(0.15 * np.sin(2 * np.pi * f0 * r * t + c) for r in (1.0, 1.25, 1.5))
            x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)) + 0.03 * rng.standard_normal(t.shape)
            chans.append(x)
        name = f"clip{i:02d}_{sr}_{ch}ch.{ext}"
        sf.write(os.path.join(d, name), np.stack(chans, 1).astype(np.float32), sr)
        lines.append(json.dumps({"path": name, "duration": sec, "sample_rate": sr, "description": f"clip {i}"}))
        total += sec
    manifest = os.path.join(d, "bench.jsonl")
    with open(manifest, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return manifest, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=6.0, help="audio in the generated corpus")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "tokenize.json"))
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, ROOT)
    import jax
    import numpy as np
    import soundfile as sf
    import soxr
    import tensorflow_datasets as tfds
    import torch

    from magnet_jax.convert.encodec import load_encodec
    from magnet_jax.data import tokenize as tok
    from tests.reference import encodec_ref as R

    torch.set_num_threads(args.threads)
    tfds.disable_progress_bar()
    work = tempfile.mkdtemp(prefix="tokbench_")
    ref = R.hf_model(seed=0, **R.hf_32khz_kwargs())
    codec_dir = os.path.join(work, "encodec_32khz_random")
    ref.save_pretrained(codec_dir)
    codec = load_encodec(codec_dir)
    sr = codec.sample_rate
    corpus = os.path.join(work, "corpus")
    os.makedirs(corpus)
    manifest, total = make_corpus(corpus, args.minutes)
    print(f"corpus: {len(_LAYOUT)} files, {total:.0f} s of audio; codec {codec}", flush=True)
    opts = tok.TokenizeOptions(batch_size=args.batch_size)

    # --- ours, end to end (cold: with compilation; warm: rebuild in the same process)
    runs = {}
    for label, overwrite in (("cold", False), ("warm", True)):
        t0 = time.perf_counter()
        res = tok.tokenize_corpus(codec=codec, codec_path=codec_dir, manifest=manifest,
                                  data_dir=os.path.join(work, "tfds"), options=opts, overwrite=overwrite)
        wall = time.perf_counter() - t0
        audio = res.report["summary"]["hours"] * 3600
        runs[label] = dict(wall_s=wall, audio_s=audio, hours_per_hour=audio / wall,
                           segments=res.report["summary"]["segments"])
        print(f"magnet_jax tokenize ({label}): {audio:.0f} s audio in {wall:.1f} s -> {audio / wall:.1f} h/h",
              flush=True)
    n_ex = len(tfds.builder_from_directory(res.dataset_dir).as_data_source("train"))

    # --- read + resample only (how much of the budget is I/O and DSP)
    t0 = time.perf_counter()
    for line in open(manifest):
        p = os.path.join(corpus, json.loads(line)["path"])
        x, fsr = sf.read(p, dtype="float32", always_2d=True)
        soxr.resample(x.mean(1, keepdims=True), fsr, sr, quality="HQ")
    t_io = time.perf_counter() - t0

    # --- reference: transformers EncodecModel in a plain loop
    bw = R.hf_32khz_kwargs()["target_bandwidths"][-1]
    with torch.no_grad():
        ref.encode(torch.zeros(1, 1, sr), None, bw)  # warm-up
        t0 = time.perf_counter()
        ref_audio = 0.0
        for line in open(manifest):
            p = os.path.join(corpus, json.loads(line)["path"])
            x, fsr = sf.read(p, dtype="float32", always_2d=True)
            x = soxr.resample(x.mean(1, keepdims=True), fsr, sr, quality="HQ")[:, 0]
            codes = ref.encode(torch.from_numpy(np.ascontiguousarray(x))[None, None], None, bw).audio_codes
            assert codes.shape[2] == codec.num_codebooks
            ref_audio += len(x) / sr
        t_ref = time.perf_counter() - t0
    ref_hph = ref_audio / t_ref
    print(f"transformers EncodecModel loop: {ref_audio:.0f} s audio in {t_ref:.1f} s -> {ref_hph:.1f} h/h", flush=True)
    print(f"read+resample alone: {t_io:.1f} s ({ref_audio / t_io:.0f} h/h)")
    ratio = {k: v["hours_per_hour"] / ref_hph for k, v in runs.items()}
    print(f"ratio ours/reference: cold {ratio['cold']:.2f}x, warm {ratio['warm']:.2f}x")

    info = dict(benchmark="tokenize", model="facebook/encodec_32khz architecture, random weights",
                corpus=dict(files=len(_LAYOUT), audio_seconds=total, examples=n_ex),
                batch_size=args.batch_size, segment_seconds=opts.segment_seconds, threads=args.threads,
                ours=runs, reference=dict(wall_s=t_ref, audio_s=ref_audio, hours_per_hour=ref_hph),
                read_resample_wall_s=t_io, ratio=ratio, jax=jax.__version__, torch=torch.__version__,
                machine=platform.machine(), cpu_count=os.cpu_count(), loadavg=os.getloadavg())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(info, fh, indent=2)
    print(f"wrote {args.out}")
    import shutil
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
