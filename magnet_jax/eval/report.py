"""One evaluation over a held-out manifest: rows ``real`` (held-out clips vs their own metadata), ``model``
(generations from the held-out descriptions), ``random`` (the same architecture, random-init LM) and the codec's
reconstruction of the held-out clips. Writes ``eval.json``, ``eval.md`` (the table) and plots into ``out``."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from magnet_jax.eval.adherence import FamilyClassifier, measure, score
from magnet_jax.eval.fad import MelEmbedding, frechet_audio_distance
from magnet_jax.eval.recon import reconstruction_metrics

TABLE_KEYS = ("family_accuracy", "mode_accuracy", "key_accuracy", "tempo_spearman", "tempo_acc2", "fad")
RECON_KEYS = ("chroma_similarity", "onset_correlation", "mel_distance", "si_snr")


def read_manifest(path: str | Path, limit: int = 0) -> list[dict]:
    """Manifest lines with their sidecar metadata (``meta``); ``limit`` > 0 takes that many, evenly spaced."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist: build the corpus first (tools/build_corpus.py)")
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not rows:
        raise ValueError(f"manifest {path} is empty")
    if 0 < limit < len(rows):
        rows = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, limit).round()]
    for r in rows:
        side = Path(r.get("info_path") or Path(r["path"]).with_suffix(".json"))
        r["meta"] = {**(json.loads(side.read_text()) if side.is_file() else {}), **{k: r[k] for k in ("description",)
                                                                                  if r.get(k)}}
        missing = [k for k in ("description", "instrument_family", "key", "mode", "bpm") if k not in r["meta"]]
        if missing:
            raise ValueError(f"{r['path']}: metadata lacks {missing} (the corpus sidecar .json gives them)")
    return rows


def read_clip(path: str, sample_rate: int, seconds: float) -> np.ndarray:
    from magnet_jax.data.audio_io import load_audio
    wav, _, _ = load_audio(path, sample_rate, 1)
    return wav[0, :int(seconds * sample_rate)]


def family_classifier(rows: list[dict], sample_rate: int, seconds: float, clips=None) -> FamilyClassifier:
    """The instrument-family classifier every evaluation judges with, trained on the manifest ``rows``' clips
    (``clips``: those clips already read at ``sample_rate``; else read here, ``seconds`` long)."""
    if clips is None:
        clips = [read_clip(r["path"], sample_rate, seconds) for r in rows]
    return FamilyClassifier().fit(np.stack([measure(c, sample_rate)["features"] for c in clips]),
                                  [r["meta"]["instrument_family"] for r in rows])


def _fad(emb, a, b) -> float:
    return frechet_audio_distance(emb, [resample_to(x, sr, emb.sample_rate) for x, sr in a],
                                  [resample_to(x, sr, emb.sample_rate) for x, sr in b])


def resample_to(wav, sr_in, sr_out):
    if sr_in == sr_out:
        return wav
    from magnet_jax.data.audio_io import resample
    return resample(wav[None], sr_in, sr_out)[0]


def _row(clips, sr, metas, clf, emb, ref) -> dict:
    measured = [measure(c, sr) for c in clips]
    r = score(measured, metas, clf)
    r["fad"] = _fad(emb, [(c, sr) for c in clips], ref)
    r["clips"] = [dict(prompt=m["description"], bpm=m["bpm"], key=f"{m['key']} {m['mode']}",
                       family=m["instrument_family"], measured_bpm=x["bpm"], measured_key=f"{x['key']} {x['mode']}",
                       predicted_family=p) for m, x, p in zip(metas, measured, r.pop("family_predictions", []))]
    return r


def _generate(pipe, texts, seconds, seed, batch_size, log):
    out = []
    for i in range(0, len(texts), batch_size):
        t0 = time.time()
        wav = pipe.generate(texts[i:i + batch_size], duration=seconds, seed=seed + i)
        out += [w[0] for w in np.asarray(wav)]
        log(f"  generated {len(out)}/{len(texts)} ({time.time() - t0:.1f} s)")
    return out


def round_trip(codec, clips, sr: int) -> list[np.ndarray]:
    """Each clip encoded and decoded by ``codec`` (resampled to its rate and back to ``sr``)."""
    out = []
    for c in clips:
        x = np.asarray(resample_to(c, sr, codec.sample_rate), np.float32)
        y = np.asarray(codec.decode(codec.encode(x[None, None])))[0, 0, :x.size]
        out.append(np.asarray(resample_to(y, codec.sample_rate, sr), np.float32)[:c.size])
    return out


def _codec_row(name, codec, real, sr, metas, clf, emb, ref, log) -> tuple[dict, list]:
    rec = round_trip(codec, real, sr)
    row = _row(rec, sr, metas, clf, emb, ref)
    per = [reconstruction_metrics(c, r, sr) for c, r in zip(real, rec)]
    row.update({k: float(np.mean([p[k] for p in per])) for k in per[0]})
    log(f"codec round trip ({name}): " + ", ".join(f"{k} {_fmt(row.get(k))}" for k in TABLE_KEYS + RECON_KEYS))
    return row, rec


def evaluate(manifest: str | Path, out: str | Path, *, model: str | None = None, train_manifest: str | None = None,
             num_clips: int = 16, num_train: int = 200, seconds: float = 10.0, random_baseline: bool = True,
             seed: int = 0, batch_size: int = 4, plots: bool = True, tokens: str | None = None,
             lm_metrics: str | None = None, codecs: dict | None = None, generation: dict | None = None,
             log=print) -> dict:
    """Evaluates ``model`` (``from_pretrained`` name / folder; None: only the real-clip reference row) on the
    held-out ``manifest``; the family classifier trains on ``train_manifest`` (default: ``train.jsonl`` next to
    it). ``tokens`` (a train + valid TFDS folder) and ``lm_metrics`` (a ``tools/train.py`` metrics.jsonl) add the
    held-out loss per stage next to the unigram baseline. Returns (and writes to ``out/eval.json``) the rows and
    the codec reconstruction. ``codecs`` (``{name: load_encodec path}``) adds a ``codec:<name>`` row per codec:
    the held-out clips encoded and decoded, scored as generations are, plus SI-SNR / mel distance / chroma
    similarity against the originals. ``generation``: decoding knobs over the model's defaults (its
    ``GenerationConfig`` fields); the JSON records the decoding the model row used (``generation``)."""
    pipe = None if model is None else _pipeline(model, generation)    # a bad model or knob fails before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    valid = read_manifest(manifest, num_clips)
    train_path = Path(train_manifest) if train_manifest else Path(manifest).with_name("train.jsonl")
    train = read_manifest(train_path, num_train)
    sr = int(valid[0].get("sample_rate") or 16000)
    emb = MelEmbedding(sample_rate=sr)
    log(f"reading {len(train)} train + {len(valid)} held-out clips ({seconds:g} s each)")
    train_clips = [read_clip(r["path"], sr, seconds) for r in train]
    real = [read_clip(r["path"], sr, seconds) for r in valid]
    metas = [r["meta"] for r in valid]
    clf = family_classifier(train, sr, seconds, train_clips)
    ref = [(c, sr) for c in real]
    result = {"manifest": str(manifest), "train_manifest": str(train_path), "seconds": seconds,
              "num_clips": len(valid), "num_train": len(train), "embedding": emb.name, "families": clf.classes,
              "rows": {}, "host": _host()}
    # the real row's FAD is train clips vs held-out clips: the distance two real sets of this corpus have
    result["rows"]["real"] = _row(real, sr, metas, clf, emb, [(c, sr) for c in train_clips])
    gens = {}
    from magnet_jax.convert.encodec import load_encodec
    for name, path in (codecs or {}).items():
        result["rows"][f"codec:{name}"], gens[f"codec:{name}"] = _codec_row(
            name, load_encodec(path), real, sr, metas, clf, emb, ref, log)
    if model is not None:
        result["generation"] = pipe.generation.to_dict()
        dur = min(seconds, pipe.window_seconds)
        rec = [np.asarray(pipe.codec.decode(pipe.codec.encode(np.asarray(resample_to(c, sr, pipe.sample_rate))
                                                              [None, None])))[0, 0] for c in real]
        per = [reconstruction_metrics(resample_to(c, sr, pipe.sample_rate), r, pipe.sample_rate)
               for c, r in zip(real, rec)]
        result["codec"] = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
        log(f"codec reconstruction: {result['codec']}")
        texts = [m["description"] for m in metas]
        variants = [("model", pipe)]
        if random_baseline:
            variants.append(("random", _random_like(pipe, seed)))
        for name, p in variants:
            log(f"generating {len(texts)} clips of {dur:g} s with the {name} LM")
            gens[name] = _generate(p, texts, dur, seed, batch_size, log)
            result["rows"][name] = _row([resample_to(g, p.sample_rate, sr) for g in gens[name]], sr, metas, clf,
                                        emb, ref)
        result["model"] = model
    if tokens:
        from magnet_jax.eval.lm_loss import last_eval_losses, unigram_baseline
        card = pipe.lm.config.card if model is not None else 1024
        result["lm_loss"] = {**unigram_baseline(tokens, card), **(last_eval_losses(lm_metrics) if lm_metrics else {})}
    (out / "eval.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "eval.md").write_text(table(result))
    if plots:
        _plots(result, out, real, gens, sr, pipe.sample_rate if model is not None else sr)
    log(table(result))
    return result


def _pipeline(model: str, generation: dict | None):
    from magnet_jax.decoding.config import with_knobs
    from magnet_jax.pipelines.magnet import MagnetPipeline
    pipe = MagnetPipeline.from_pretrained(model)
    pipe.generation = with_knobs(pipe.generation, generation or {}, "--generation")
    return pipe


def _host() -> dict:
    """Where and when the evaluation ran (the committed results carry it)."""
    import datetime
    import os
    import platform
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), cpu)
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def _random_like(pipe, seed):
    """The same pipeline with a random-init LM of the same architecture (the "untrained" baseline)."""
    import dataclasses

    from flax import nnx

    from magnet_jax.model import MagnetLM
    return dataclasses.replace(pipe, lm=MagnetLM(pipe.lm.config, rngs=nnx.Rngs(seed + 1)), name="random-init")


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def table(result: dict) -> str:
    rows = result["rows"]
    keys = TABLE_KEYS + (RECON_KEYS if any(k.startswith("codec:") for k in rows) else ())
    lines = ["| row | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    any_row = next(iter(rows.values()))
    lines.append(f"\nchance: family {_fmt(any_row.get('family_chance'))}, mode 0.5, key {1 / 24:.3f}; "
                 f"{result['num_clips']} held-out clips, FAD on {result['embedding']} frames")
    if "codec" in result:
        lines.append("codec reconstruction: " + ", ".join(f"{k} {v:.3f}" for k, v in result["codec"].items()))
    if "lm_loss" in result:
        lines.append("held-out LM loss (nats) per stage vs unigram: " + ", ".join(
            f"{_fmt(result['lm_loss'].get(f'eval_loss_stage{k}'))} vs {_fmt(result['lm_loss'][f'unigram_stage{k}'])}"
            for k in range(4) if f"unigram_stage{k}" in result["lm_loss"]))
    return "\n".join(lines) + "\n"


def _plots(result, out: Path, real, gens, sr, gen_sr):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from magnet_jax.audio_files import spectrogram_db
    rows = result["rows"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
    keys = [k for k in TABLE_KEYS if k != "fad"]
    for i, (name, r) in enumerate(rows.items()):
        ax[0].bar(np.arange(len(keys)) + 0.25 * i, [np.nan_to_num(r.get(k, 0.0)) for k in keys], 0.25, label=name)
        for c in r["clips"]:
            ax[1].scatter(c["bpm"], c["measured_bpm"], s=12, color=f"C{i}")
    ax[0].set_xticks(np.arange(len(keys)) + 0.25, keys, rotation=20, fontsize=8)
    ax[0].legend()
    ax[0].set_title("text adherence")
    ax[1].set_xlabel("prompt bpm")
    ax[1].set_ylabel("measured bpm")
    ax[1].set_title("tempo")
    fig.tight_layout()
    fig.savefig(out / "adherence.png", dpi=100)
    plt.close(fig)
    shown = [("real", real[0], sr)] + [(k, v[0], sr if k.startswith("codec:") else gen_sr) for k, v in gens.items()]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.2 * len(shown)), squeeze=False)
    for a, (name, wav, s) in zip(axes[:, 0], shown):
        a.imshow(spectrogram_db(np.asarray(wav)), origin="lower", aspect="auto", cmap="magma")
        a.set_title(f"{name}: {rows['real']['clips'][0]['prompt']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "spectrograms.png", dpi=100)
    plt.close(fig)
    codecs = [k for k in gens if k.startswith("codec:")]
    if codecs:
        codec_figure(out / "codec_round_trip.png", real[0], {k[6:]: gens[k][0] for k in codecs}, sr,
                     rows["real"]["clips"][0]["prompt"])


def codec_figure(path, clip, round_trips: dict, sr: int, title: str = "", seconds: float = 4.0,
                 max_hz: float = 4000.0):
    """A held-out clip and its round trip through each codec: linear-frequency spectrograms, 0-``max_hz``, the
    first ``seconds`` (n_fft 2048: 7.8 Hz bins at 16 kHz, so each note's partials are separate lines)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from magnet_jax.audio_files import spectrogram_db
    shown = [("held-out clip", clip)] + [(f"round trip: {k}", v) for k, v in round_trips.items()]
    n_fft, hop = 2048, 256
    top = int(max_hz / (sr / 2) * (n_fft // 2)) + 1
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.6 * len(shown)), squeeze=False)
    for a, (name, wav) in zip(axes[:, 0], shown):
        spec = spectrogram_db(np.asarray(wav)[:int(seconds * sr)], n_fft=n_fft, hop=hop)[:top]
        a.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 80, vmax=spec.max(),
                 extent=(0, spec.shape[1] * hop / sr, 0, top * sr / n_fft))
        a.set_ylabel("Hz")
        a.set_title(name, fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
