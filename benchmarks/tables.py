"""Markdown tables from the committed results (benchmarks/results/*.json): the README's tables are pasted from here.

  python -m benchmarks.tables codec_round_trip      # tools/evaluate.py rows (real, codecs, models)
  python -m benchmarks.tables codec_throughput      # benchmarks/codec_throughput.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
EVAL_COLUMNS = (("family_accuracy", "family"), ("mode_accuracy", "mode"), ("key_accuracy", "key"),
                ("tempo_spearman", "tempo rank corr."), ("fad", "FAD"), ("chroma_similarity", "chroma sim."),
                ("mel_distance", "mel dist."), ("si_snr", "SI-SNR dB"))


def _f(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def eval_table(result: dict) -> str:
    rows = result["rows"]
    cols = [(k, name) for k, name in EVAL_COLUMNS if any(k in r for r in rows.values())]
    out = ["| clips | " + " | ".join(n for _, n in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        label = {"real": "real held-out clips"}.get(name, name.replace("codec:", "round trip: "))
        out.append(f"| {label} | " + " | ".join(_f(r.get(k), 1 if k == "fad" else 3) for k, _ in cols) + " |")
    host = result.get("host", {})
    out.append(f"\n{result['num_clips']} held-out clips of {result['seconds']:g} s; FAD on {result['embedding']} "
               f"frames (real: training clips vs held-out clips); {host.get('cpu', '?')}, {host.get('date', '?')}")
    return "\n".join(out)


def throughput_table(result: dict) -> str:
    out = ["| config | arch | params | batch | ms / step | audio s / s | GFLOP / step | MFU |",
           "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        out.append(f"| {r['config']} | {r['arch']} | {r['params'] / 1e6:.2f} M | {r['batch']} x "
                   f"{r['segment_seconds']:g} s | {r['step_s'] * 1e3:.0f} | {r['audio_seconds_per_sec']:.1f} | "
                   f"{r['flops_per_step'] / 1e9:.1f} | {100 * r['mfu']:.0f} % |")
    m = result["machine"]
    out.append(f"\n{m.get('cpu', '?')} ({m.get('cpu_count')} cores), matmul peak "
               f"{result['matmul_peak_flops'] / 1e9:.0f} GFLOP/s, {m.get('date', '?')}")
    return "\n".join(out)


TABLES = {"codec_round_trip": eval_table, "bundled_eval": eval_table, "codec_throughput": throughput_table}


def main(argv):
    names = argv[1:] or list(TABLES)
    for name in names:
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r}: one of {', '.join(TABLES)}")
        print(TABLES[name](json.loads((RESULTS / f"{name}.json").read_text())) + "\n")


if __name__ == "__main__":
    main(sys.argv)
