"""One TFDS dataset with a ``train`` and a ``valid`` split, from two ``tools/tokenize_dataset.py`` outputs.

The tokenizer writes one ``train`` split per corpus; the LM trainer evaluates on a split of the same dataset
(``--config.eval_split``). The bundled recipe tokenizes the held-out works separately and this joins them: the
ArrayRecord shards are copied under their split's name and ``dataset_info.json`` lists both splits. Both inputs
must come from the same codec (the codec records are compared).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from magnet_jax.data.input_pipeline import find_builder_dir


def merge_splits(out: str | os.PathLike, sources: dict[str, str | os.PathLike]) -> Path:
    """Writes ``out/NAME/VERSION`` holding each ``sources[split]`` dataset's ``train`` split as ``split``."""
    if "train" not in sources:
        raise ValueError(f"merge_splits needs a 'train' source, got {sorted(sources)}")
    dirs = {s: find_builder_dir(str(d)) for s, d in sources.items()}
    infos = {s: json.loads((d / "dataset_info.json").read_text()) for s, d in dirs.items()}
    base = infos["train"]
    name, version = base["name"], base["version"]
    for s, info in infos.items():
        if (info["name"], info["version"]) != (name, version):
            raise ValueError(f"{dirs[s]} is dataset {info['name']} {info['version']}, not {name} {version}")
        if info.get("metadata", {}).get("codec") != base.get("metadata", {}).get("codec"):
            raise ValueError(f"{dirs[s]} was tokenized with another codec than {dirs['train']}: re-tokenize both "
                             f"with the same --codec")
    dst = Path(out) / name / version
    tmp = dst.with_name(version + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prefix = f"{name}-train."
    for f in dirs["train"].iterdir():   # metadata files of the train dataset (not its shards, not its index)
        # segment_index.json indexes one split; without it the input pipeline indexes each split it opens
        if f.is_file() and not f.name.startswith(prefix) and f.name != "segment_index.json":
            shutil.copy2(f, tmp / f.name)
    splits = []
    for s, d in dirs.items():
        for f in d.glob(prefix + "*"):
            shutil.copy2(f, tmp / (f"{name}-{s}." + f.name[len(prefix):]))
        entry = next(e for e in infos[s]["splits"] if e["name"] == "train")
        splits.append({**entry, "name": s})
        if (d / "tokenize_report.json").is_file():
            shutil.copy2(d / "tokenize_report.json", tmp / f"tokenize_report_{s}.json")
    info = dict(base, splits=splits)
    (tmp / "dataset_info.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return dst
