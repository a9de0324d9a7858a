"""Build time: writing the bundled model's folder (:mod:`magnet_jax.bundled.package` reads it at run time).

:func:`assemble` checks that the parts fit by loading them (the codec and the text stack, from
:mod:`magnet_jax.convert`), so this module is used by ``tools/make_bundled.sh``, never by a pipeline.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from magnet_jax.bundled.config import NAME
from magnet_jax.bundled.package import INFO, LM_FILES, PARTS


def _lm_export_dir(lm: str | os.PathLike) -> Path:
    """An LM export folder, or a ``tools/train.py`` workdir (its ``export/``: the EMA weights)."""
    p = Path(lm)
    for cand in (p, p / "export"):
        if all((cand / f).is_file() for f in LM_FILES):
            return cand
    raise FileNotFoundError(f"{lm}: no LM export ({LM_FILES[0]}); pass a tools/train.py workdir or its export/")


def assemble(out: str | os.PathLike, *, lm: str | os.PathLike, codec: str | os.PathLike,
             t5: str | os.PathLike, info: dict | None = None) -> Path:
    """Writes the bundled folder ``out`` from an LM export (or train workdir), a transformers-layout codec export
    (``tools/export_codec.py --format=transformers``) and a text folder (:func:`~magnet_jax.bundled.text.
    build_text_encoder`). The LM's config records ``t5`` / ``kind`` so the folder is self-describing.
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
                                        "lm_step": meta.get("step"), **(info or {})}, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
