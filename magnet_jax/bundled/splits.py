"""One TFDS dataset with a ``train`` and a ``valid`` split, from ``tools/tokenize_dataset.py`` outputs.

The tokenizer writes one ``train`` split per corpus; the LM trainer evaluates on a split of the same dataset
(``--config.eval_split``). The bundled recipe tokenizes the held-out works separately and this joins them: the
ArrayRecord shards are copied under their split's name and ``dataset_info.json`` lists both splits. A split may
come from several tokenizer outputs (e.g. a corpus grown by more renderings, tokenized in pieces): their shards
are concatenated in the order given. Every input must come from the same codec (the codec records are compared).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from magnet_jax.data.input_pipeline import find_builder_dir
from magnet_jax.data.tokenize.codec_record import read_codec_info

Sources = str | os.PathLike | list | tuple


def merge_splits(out: str | os.PathLike, sources: dict[str, Sources]) -> Path:
    """Writes ``out/NAME/VERSION`` holding the ``train`` split of each ``sources[split]`` dataset (one tokenizer
    output, or a list of them joined in order) as ``split``."""
    if "train" not in sources:
        raise ValueError(f"merge_splits needs a 'train' source, got {sorted(sources)}")
    dirs = {s: [find_builder_dir(str(d)) for d in (v if isinstance(v, (list, tuple)) else [v])]
            for s, v in sources.items()}
    if not all(dirs.values()):
        raise ValueError(f"merge_splits: split(s) {[s for s, d in dirs.items() if not d]} name no dataset")
    infos = {d: json.loads((d / "dataset_info.json").read_text()) for ds in dirs.values() for d in ds}
    first = dirs["train"][0]
    base = infos[first]
    name, version = base["name"], base["version"]
    codec = _codec(first)
    for d, info in infos.items():
        if (info["name"], info["version"]) != (name, version):
            raise ValueError(f"{d} is dataset {info['name']} {info['version']}, not {name} {version}")
        if _codec(d) != codec:
            raise ValueError(f"{d} was tokenized with another codec than {first}: re-tokenize all inputs with the "
                             f"same --codec")
    dst = Path(out) / name / version
    tmp = dst.with_name(version + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prefix = f"{name}-train."
    for f in first.iterdir():   # metadata files of the first train dataset (not its shards, not its index)
        # segment_index.json indexes one split; without it the input pipeline indexes each split it opens
        if f.is_file() and not f.name.startswith(prefix) and f.name != "segment_index.json":
            shutil.copy2(f, tmp / f.name)
    fmt = base.get("fileFormat", "array_record")
    splits = []
    for s, ds in dirs.items():
        entries = [next(e for e in infos[d]["splits"] if e["name"] == "train") for d in ds]
        shards = [f for d in ds for f in sorted(d.glob(prefix + "*"))]   # -00000-of-0000N order
        for i, f in enumerate(shards):
            shutil.copy2(f, tmp / f"{name}-{s}.{fmt}-{i:05d}-of-{len(shards):05d}")
        splits.append({**entries[0], "name": s, "numBytes": str(sum(int(e.get("numBytes", 0)) for e in entries)),
                       "shardLengths": [n for e in entries for n in e["shardLengths"]]})
        for i, d in enumerate(ds):
            if (d / "tokenize_report.json").is_file():
                shutil.copy2(d / "tokenize_report.json", tmp / _report_name(s, i))
    info = dict(base, splits=splits)
    (tmp / "dataset_info.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return dst


def _codec(d: Path) -> dict:
    """The codec record of dataset folder ``d`` without where the codec was read from (the same weights may be
    read from another folder: the fingerprint says whether they are the same)."""
    info = read_codec_info(str(d))
    return {k: v for k, v in info.items() if k != "path"}


def _report_name(split: str, i: int) -> str:
    """The name of the tokenize report of the ``i``-th tokenizer output joined into ``split``."""
    return f"tokenize_report_{split}{f'_{i}' if i else ''}.json"


def split_reports(dataset_dir: str | os.PathLike, split: str = "train") -> list[Path]:
    """The tokenize reports :func:`merge_splits` kept for ``split`` of ``dataset_dir`` (``OUT/NAME/VERSION``), one
    per tokenizer output, in the order the split joined them: ``tokenize_report_SPLIT.json``, ``..._1.json``, ..."""
    # _report_name's order: the unnumbered first, then _1 .. _9, _10, ... (a longer name is a later index)
    reports = Path(dataset_dir).glob(f"{_report_name(split, 0)[:-len('.json')]}*.json")
    return sorted(reports, key=lambda f: (len(f.name), f.name))
