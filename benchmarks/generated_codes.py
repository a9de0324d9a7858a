"""Where do an LM's generated codes leave the real ones? Per codebook statistics of generated codes next to the real
codes of the same held-out clips, and the FAD of clips that mix the two.

  python -m benchmarks.generated_codes --manifest=CORPUS/valid64.jsonl --tokens=TOKENS \\
      --variant="shipped=bundled" --variant="rotary 6000, temp 2=FOLDER|temp=2.0" [--num_clips=16]

Each ``--variant`` is ``LABEL=MODEL[|KNOB=VALUE...]`` (``MagnetPipeline.from_pretrained`` name or folder, then
decoding knobs over its defaults, values as JSON). For ``--num_clips`` held-out clips (evenly spaced over the
manifest) the real codes are the model's codec's encoding of the clip, the generated codes the LM's from the clip's
description (10 s, seed = the index of the batch's first clip). Per codebook: the fraction of frames whose code
differs from the previous frame and the distinct codebook-0 codes per clip (``benchmarks.common.code_stats``). For
codebook 0: one-frame excursions (``blip_rate``: a click in the audio), the distinct codes held 5 frames or more
per clip (``held_codes``: the notes a clip moves through), and the fraction of its code changes ``a -> b`` that
occur anywhere in the ``--tokens`` training split (``seen_transitions``). FAD (mel frames, against the real clips)
of the decoded generated codes, of generated codebook 0 under the real codebooks 1.., and of real codebook 0 under
generated codebooks 1.. says which codebook costs the distance; real codes cut into ``--collage``-frame chunks of
random clips say how FAD prices local coherence. Writes ``benchmarks/results/generated_codes.json``
(rows keyed by label; a re-run replaces the rows it names and keeps the others).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """The CLI's flags (defined when run, so tests can import the helpers next to other benchmarks)."""
    flags.DEFINE_string("manifest", None, "held-out manifest (.jsonl; tools/build_corpus.py)")
    flags.DEFINE_string("tokens", None, "tokenized corpus (tools/tokenize_dataset.py) whose train split gives the "
                        "transitions seen in training")
    flags.DEFINE_multi_string("variant", [], "LABEL=MODEL[|KNOB=VALUE...]: a model (name or folder) and decoding knobs")
    flags.DEFINE_integer("num_clips", 16, "held-out clips")
    flags.DEFINE_integer("batch_size", 4, "generations per call")
    flags.DEFINE_float("seconds", 10.0, "clip length")
    flags.DEFINE_multi_integer("collage", [3, 25], "also rows of real codes cut into chunks of this many frames "
                               "taken from random held-out clips (how FAD prices local coherence)")
    flags.DEFINE_string("out", None, "JSON output (default benchmarks/results/generated_codes.json)")


def parse_variant(spec: str) -> tuple[str, str, dict]:
    """``"LABEL=MODEL|temp=2.0|decoding_steps=[60,10,10,10]"`` -> (label, model, knobs)."""
    label, sep, rest = spec.partition("=")
    if not sep or not label or not rest:
        raise app.UsageError(f"--variant={spec!r}: expected LABEL=MODEL[|KNOB=VALUE...]")
    model, *knobs = rest.split("|")
    return label, model, parse_knob_list(spec, knobs)


def parse_knob_list(spec: str, knobs: list[str]) -> dict:
    """``["temp=2.0", "decoding_steps=[60,10,10,10]"]`` (of the ``--variant`` ``spec``) -> knobs, values as JSON."""
    out = {}
    for k in knobs:
        name, sep, value = k.partition("=")
        if not sep:
            raise app.UsageError(f"--variant={spec!r}: knob {k!r} is not KNOB=VALUE")
        out[name] = json.loads(value)
    return out


def train_transitions(tokens: str) -> set:
    """Every code change ``(a, b)`` of codebook 0 in the tokenized corpus's train split."""
    from magnet_jax.data.input_pipeline import data_source, find_builder_dir
    src = data_source(find_builder_dir(tokens), "train")
    seen = set()
    for i in range(len(src)):
        c = np.asarray(src[i]["codes"])[0]
        seen.update(zip(c[:-1].tolist(), c[1:].tolist()))
    return seen


def melody_stats(codes: np.ndarray, hold: int = 5) -> dict:
    """Codebook 0 of ``codes`` [B, K, T]: ``blip_rate``, the fraction of frames that differ from both neighbours
    while the neighbours agree (a one-frame excursion: a click in the audio), and ``held_codes``, the distinct codes
    per clip that last at least ``hold`` frames in a row (the notes and chords a clip moves through)."""
    c = codes[:, 0]
    blips = (c[:, 1:-1] != c[:, :-2]) & (c[:, :-2] == c[:, 2:])
    held = []
    for row in c:
        edges = np.flatnonzero(np.diff(row)) + 1
        starts, ends = np.r_[0, edges], np.r_[edges, row.size]
        held.append(len({int(row[s]) for s, e in zip(starts, ends) if e - s >= hold}))
    return dict(blip_rate=float(blips.mean()), held_codes=float(np.mean(held)))


def collage(codes: np.ndarray, length: int, seed: int = 0) -> np.ndarray:
    """``codes`` [B, K, T] rebuilt from ``length``-frame chunks (all codebooks) of random clips at random offsets:
    every frame real, the music cut every ``length`` frames."""
    rng = np.random.default_rng(seed)
    B, _, T = codes.shape
    out = np.empty_like(codes)
    for b in range(B):
        for t in range(0, T, length):
            n = min(length, T - t)
            j, s = rng.integers(B), rng.integers(0, T - length + 1)
            out[b, :, t:t + n] = codes[j, :, s:s + n]
    return out


def seen_fraction(codes: np.ndarray, seen: set) -> float:
    pairs = [(a, b) for row in codes[:, 0] for a, b in zip(row[:-1].tolist(), row[1:].tolist()) if a != b]
    return float(np.mean([p in seen for p in pairs])) if pairs else float("nan")


def main(argv):
    del argv
    if not FLAGS.manifest or not FLAGS.tokens or not FLAGS.variant:
        raise app.UsageError("--manifest, --tokens and at least one --variant are required")
    from benchmarks.common import code_stats, machine, write_json
    from magnet_jax.decoding.config import with_knobs
    from magnet_jax.eval.fad import MelEmbedding
    from magnet_jax.eval.report import _fad, read_clip, read_manifest
    from magnet_jax.pipelines.magnet import MagnetPipeline

    variants = [parse_variant(v) for v in FLAGS.variant]
    valid = read_manifest(FLAGS.manifest, FLAGS.num_clips)
    texts = [r["meta"]["description"] for r in valid]
    seen = train_transitions(FLAGS.tokens)
    path = Path(FLAGS.out or Path(__file__).resolve().parent / "results" / "generated_codes.json")
    result = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    rows = result["rows"]
    for label, model, knobs in variants:
        t0 = time.time()
        pipe = MagnetPipeline.from_pretrained(model)
        pipe.generation = with_knobs(pipe.generation, knobs, f"--variant={label}")
        sr = pipe.sample_rate
        real = [read_clip(r["path"], sr, FLAGS.seconds) for r in valid]
        emb = MelEmbedding(sample_rate=sr)
        ref = [(w, sr) for w in real]
        rcodes = np.concatenate([np.asarray(pipe.encode_audio(w[None], sr)) for w in real])
        b = FLAGS.batch_size
        gcodes = np.concatenate([np.asarray(pipe.generate_codes(texts[i:i + b], duration=FLAGS.seconds, seed=i))
                                 for i in range(0, len(texts), b)])
        T = min(rcodes.shape[-1], gcodes.shape[-1])
        rcodes, gcodes = rcodes[..., :T], gcodes[..., :T]

        def fad(codes):
            wavs = np.concatenate([np.asarray(pipe.decode_codes(codes[i:i + b]))[:, 0]
                                   for i in range(0, len(codes), b)])
            return _fad(emb, [(w[:r.size], sr) for w, r in zip(wavs, real)], ref)

        def measured(codes) -> dict:
            return dict(model=model, num_clips=len(real), **code_stats(codes), **melody_stats(codes),
                        seen_transitions=seen_fraction(codes, seen), fad_decoded=fad(codes))

        gen0 = rcodes.copy()
        gen0[:, 0] = gcodes[:, 0]
        real0 = gcodes.copy()
        real0[:, 0] = rcodes[:, 0]
        references = {"real codes": lambda: rcodes,
                      **{f"real codes, a collage of {n}-frame chunks": (lambda n=n: collage(rcodes, n))
                         for n in FLAGS.collage}}
        for name, make in references.items():
            if name not in rows or rows[name].get("num_clips") != len(real):
                rows[name] = measured(make())
        rows[label] = dict(**measured(gcodes), knobs=knobs, generation=pipe.generation.to_dict(),
                           fad_generated_cb0_real_rest=fad(gen0), fad_real_cb0_generated_rest=fad(real0),
                           seconds_taken=round(time.time() - t0, 1))
        print(label, {k: v for k, v in rows[label].items() if k != "generation"}, flush=True)
        result.update(benchmark="generated_codes", machine=machine(), manifest=FLAGS.manifest,
                      tokens=FLAGS.tokens, seconds=FLAGS.seconds)
        write_json("generated_codes", result, str(path))


if __name__ == "__main__":
    define_flags()
    app.run(main)
