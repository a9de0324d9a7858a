"""Build time: writing the bundled model's folder (:mod:`magnet_jax.bundled.package` reads it at run time).

:func:`assemble` checks that the parts fit by loading them (the codec and the text stack, from
:mod:`magnet_jax.convert`), so this module is used by ``tools/make_bundled.sh``, never by a pipeline. It also
records the model's example description (:func:`example_description`, from the clips its LM was trained on): the
text ``tools/generate.py`` / ``tools/run.sh`` use when no ``--text`` is given.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import statistics
from pathlib import Path

from magnet_jax import presets
from magnet_jax.bundled.config import NAME
from magnet_jax.bundled.descriptions import describe
from magnet_jax.bundled.package import EXAMPLE_KEY, GENERATION_KEY, INFO, LM_FILES, PARTS
from magnet_jax.decoding.config import with_knobs

# What a training clip's sidecar must hold for example_description (descriptions.describe's inputs + the family).
META_KEYS = ("instrument", "instrument_family", "era", "genre", "bpm", "key", "mode", "meter")


def _most_common(values):
    """The most frequent value; ties go to the smallest (sorted), so the choice never depends on the order."""
    counts = collections.Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


def example_description(metas: list[dict]) -> str | None:
    """A typical description of the training clips ``metas`` (their sidecars: :mod:`magnet_jax.bundled.corpus`),
    phrased by :func:`~magnet_jax.bundled.descriptions.describe` as the training descriptions are, naming a tempo
    and a key: the most common instrument family's most common instrument, playing the most common style (era,
    genre, composer) at that style's median tempo, in the most common key and mode. None without usable metas."""
    metas = [m for m in metas if all(m.get(k) not in (None, "") for k in META_KEYS)]
    if not metas:
        return None
    family = _most_common(m["instrument_family"] for m in metas)
    instrument = _most_common(m["instrument"] for m in metas if m["instrument_family"] == family)
    era, genre, composer = _most_common((m["era"], m["genre"], m.get("composer") or "") for m in metas)
    style = [m for m in metas if (m["era"], m["genre"]) == (era, genre)]
    key, mode = _most_common((m["key"], m["mode"]) for m in metas)
    meta = dict(instrument=instrument, era=era, genre=genre, composer=composer, key=key, mode=mode,
                bpm=float(statistics.median_low(float(m["bpm"]) for m in style)),
                meter=_most_common(m["meter"] for m in style))
    named = (f"{int(round(meta['bpm']))} bpm", f"{key} {mode}")
    first = None
    for seed in range(1000):    # describe's own wording (seeded), the first one that names the tempo and the key
        text = describe(meta, seed)
        first = first or text
        if all(n in text for n in named):
            return text
    return first


def _trained_clips(lm: str | os.PathLike) -> list[Path]:
    """The clips an LM workdir (or its ``export/``) was trained on: its ``config.json``'s ``data_dir``, whose
    tokenize reports of the ``train`` split list them. Empty when any of that is missing."""
    from magnet_jax.bundled.splits import split_reports
    from magnet_jax.data.input_pipeline import find_builder_dir
    for workdir in (Path(lm), Path(lm).parent):
        try:
            data_dir = json.loads((workdir / "config.json").read_text())["data_dir"]
            builder = find_builder_dir(data_dir)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        reports = split_reports(builder, "train")      # a merged dataset: one report per tokenizer output
        reports = reports or [r for r in [builder / "tokenize_report.json"] if r.is_file()]
        if reports:
            return [Path(k["path"]) for r in reports for k in json.loads(r.read_text()).get("kept", [])]
    return []


def training_metas(train_manifest: str | os.PathLike | None = None, lm: str | os.PathLike | None = None) -> list:
    """The sidecars (``.json`` next to each clip) of the training clips: those of ``train_manifest`` (an audiocraft
    manifest, ``.jsonl``), else those the LM workdir ``lm`` (or its ``export/``) was trained on. Empty when neither
    can be found; unreadable sidecars are left out."""
    if train_manifest is not None:
        lines = [json.loads(x) for x in Path(train_manifest).read_text().splitlines() if x.strip()]
        sidecars = [Path(d.get("info_path") or Path(d["path"]).with_suffix(".json")) for d in lines]
    else:
        sidecars = [c.with_suffix(".json") for c in (_trained_clips(lm) if lm is not None else [])]
    metas = []
    for p in sidecars:
        try:
            metas.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return metas


def _lm_export_dir(lm: str | os.PathLike) -> Path:
    """An LM export folder, or a ``tools/train.py`` workdir (its ``export/``: the EMA weights)."""
    p = Path(lm)
    for cand in (p, p / "export"):
        if all((cand / f).is_file() for f in LM_FILES):
            return cand
    raise FileNotFoundError(f"{lm}: no LM export ({LM_FILES[0]}); pass a tools/train.py workdir or its export/")


def assemble(out: str | os.PathLike, *, lm: str | os.PathLike, codec: str | os.PathLike,
             t5: str | os.PathLike, info: dict | None = None,
             train_manifest: str | os.PathLike | None = None, generation: dict | None = None) -> Path:
    """Writes the bundled folder ``out`` from an LM export (or train workdir), a transformers-layout codec export
    (``tools/export_codec.py --format=transformers``) and a text folder (:func:`~magnet_jax.bundled.text.
    build_text_encoder`). The LM's config records ``t5`` / ``kind`` so the folder is self-describing.
    ``bundled.json`` records the example description (:func:`example_description`) of the training clips
    (:func:`training_metas`: ``train_manifest``, else the clips the ``lm`` workdir was trained on), when found,
    and the decoding defaults ``generation`` (default :data:`magnet_jax.presets.BUNDLED_GENERATION`), which the
    loader applies over the music defaults.
    Written to ``out.tmp`` first, then renamed: a stopped run leaves no half folder."""
    # imported here: `import magnet_jax.bundled` (which re-exports this function) stays free of the loaders
    from magnet_jax.convert.encodec import load_encodec
    from magnet_jax.convert.t5 import load_text_stack

    out = Path(out)
    lm_dir, codec, t5 = _lm_export_dir(lm), Path(codec), Path(t5)
    meta = json.loads((lm_dir / LM_FILES[1]).read_text())
    m = meta["model"]
    c = load_encodec(str(codec))                     # checks the parts fit before anything is written
    if (c.num_codebooks, c.cardinality, float(c.frame_rate)) != (m["n_q"], m["card"], float(m["frame_rate"])):
        raise ValueError(f"codec {codec} has {c.num_codebooks} x {c.cardinality} codes at {c.frame_rate} Hz, the "
                         f"LM expects {m['n_q']} x {m['card']} at {m['frame_rate']} Hz")
    load_text_stack(str(t5), int(m["text_dim"]))
    generation = dict(presets.BUNDLED_GENERATION if generation is None else generation)
    with_knobs(presets.get(NAME).generation, generation, "assemble(generation=)")   # a bad knob: refused here
    example = example_description(training_metas(train_manifest, lm))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "lm").mkdir(parents=True)
    shutil.copy2(lm_dir / LM_FILES[0], tmp / "lm" / LM_FILES[0])
    meta.update(t5="t5", kind="music")               # t5 relative to the bundled folder (see pipeline)
    (tmp / "lm" / LM_FILES[1]).write_text(json.dumps(meta, indent=1))
    shutil.copytree(codec, tmp / "codec")
    shutil.copytree(t5, tmp / "t5")
    sizes = {p: sum(f.stat().st_size for f in (tmp / p).rglob("*") if f.is_file()) for p in PARTS}
    (tmp / INFO).write_text(json.dumps({"name": NAME, "sizes_bytes": sizes, "sample_rate": c.sample_rate,
                                        "lm_step": meta.get("step"),
                                        **({EXAMPLE_KEY: example} if example else {}),
                                        GENERATION_KEY: generation,
                                        **(info or {})}, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
