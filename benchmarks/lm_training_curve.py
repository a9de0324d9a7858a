"""Held-out loss per stage over a training run (one or more consecutive workdirs, e.g. a run and its warm restart),
against the unigram baseline of the same held-out tokens; JSON + figure.

  python -m benchmarks.lm_training_curve --workdir=W1 --workdir=W2 --unigram_from=EVAL_DIR/eval.json \\
      --name=bundled_lm_curve

Each workdir's ``metrics.jsonl`` (the trainer's eval rows ``eval_loss_stage*``) is read; a later workdir that
started from an earlier one's export (``init_from``) continues its step count. The unigram baseline comes from
``tools/evaluate.py``'s ``eval.json`` (``unigram_stage*``).

Runs side by side (e.g. the same recipe from different initial weights), stages 0 and 1 per run:

  python -m benchmarks.lm_training_curve --compare="from scratch=benchmarks/results/rope_lm_curve.json" \
      --compare="warm start=W/lm_warm" --name=rope_init_curves

Each ``--compare=LABEL=SOURCE``: SOURCE is a workdir (several, in training order, joined by ``,``) or the
results JSON of an earlier single-run call of this benchmark (its workdirs may be gone).
"""
from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags

from benchmarks.common import ROOT, machine, write_json

flags.DEFINE_multi_string("workdir", [], "trainer workdirs, in training order")
flags.DEFINE_string("unigram_from", None, "tools/evaluate.py eval.json with unigram_stage* (optional)")
flags.DEFINE_string("name", "lm_training_curve", "results/NAME.json and figures/NAME.png")
flags.DEFINE_multi_string("compare", [], "LABEL=SOURCE: runs side by side (SOURCE: workdir[,workdir...] or a "
                          "results JSON of this benchmark); replaces --workdir")
FLAGS = flags.FLAGS


def read_run(workdirs: list[str]) -> dict:
    rows, offset, config = [], 0, None
    for w in workdirs:
        last = 0
        for line in (Path(w) / "metrics.jsonl").read_text().splitlines():
            d = json.loads(line)
            if "eval_loss_stage0" in d:
                rows.append({"step": offset + int(d["step"]), "workdir": w,
                             **{k: float(v) for k, v in d.items() if k.startswith("eval_loss")}})
            last = max(last, int(d.get("step", 0)))
        cfg = json.loads((Path(w) / "config.json").read_text()) if (Path(w) / "config.json").is_file() else {}
        config = config or cfg
        rows_w = [r for r in rows if r["workdir"] == w]
        offset = rows_w[-1]["step"] if rows_w else offset + last
    return {"rows": rows, "batch_size": (config or {}).get("batch_size"),
            "learning_rate": (config or {}).get("learning_rate")}


def read_source(source: str) -> dict:
    """A run from a results JSON of this benchmark (``*.json``, with the unigram baseline it recorded) or from
    workdirs (``W1[,W2...]``)."""
    if source.endswith(".json"):
        r = json.loads(Path(source).read_text())
        return {k: r[k] for k in ("rows", "batch_size", "learning_rate")} | {
            "workdirs": r.get("workdirs", []), "unigram_per_stage": r.get("unigram_per_stage")}
    workdirs = source.split(",")
    return read_run(workdirs) | {"workdirs": workdirs}


def parse_compare(specs: list[str]) -> dict:
    runs = {}
    for spec in specs:
        label, sep, source = spec.partition("=")
        if not sep or not label or not source:
            raise SystemExit(f"--compare={spec!r}: expected LABEL=WORKDIR[,WORKDIR...] or LABEL=RESULTS.json")
        runs[label] = read_source(source)
    return runs


def compare_figure(runs: dict, unigram, name: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for stage, ax in enumerate(axes):
        key = f"eval_loss_stage{stage}"
        for label, run in runs.items():
            rows = [r for r in run["rows"] if key in r]
            ax.plot([r["step"] for r in rows], [r[key] for r in rows], marker=".", label=label)
        if unigram and stage < len(unigram):
            ax.axhline(unigram[stage], color="grey", ls=":", lw=1, label="unigram")
        ax.set_title(f"stage {stage} (codebook {stage})")
        ax.set_xlabel("step")
        ax.set_ylabel("held-out CE (nats)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out = ROOT / "benchmarks" / "figures" / f"{name}.png"
    fig.savefig(out, dpi=110)
    return out


def main(argv):
    unigram = None
    if FLAGS.unigram_from:
        ev = json.loads(Path(FLAGS.unigram_from).read_text())
        ev = ev.get("lm_loss", ev)                      # tools/evaluate.py nests it under lm_loss
        unigram = [ev[f"unigram_stage{i}"] for i in range(4) if f"unigram_stage{i}" in ev]
    if FLAGS.compare:
        runs = parse_compare(FLAGS.compare)
        recorded = [u for run in runs.values() if (u := run.pop("unigram_per_stage", None))]
        unigram = unigram or next(iter(recorded), None)  # else the one a results JSON of a single run carries
        write_json(FLAGS.name, {"benchmark": FLAGS.name, "runs": runs, "unigram_per_stage": unigram,
                                "machine": machine()})
        print(f"wrote {compare_figure(runs, unigram, FLAGS.name)}")
        return
    run = read_run(FLAGS.workdir)
    payload = {"benchmark": FLAGS.name, "workdirs": FLAGS.workdir, "unigram_per_stage": unigram, **run,
               "machine": machine()}
    write_json(FLAGS.name, payload)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.6))
    steps = [r["step"] for r in run["rows"]]
    stages = sorted({k for r in run["rows"] for k in r if k.startswith("eval_loss_stage")})
    for i, k in enumerate(stages):
        line, = ax.plot(steps, [r[k] for r in run["rows"]], marker=".", label=f"stage {i}")
        if unigram and i < len(unigram):
            ax.axhline(unigram[i], color=line.get_color(), ls=":", lw=1)
    for w in FLAGS.workdir[:-1]:                        # each warm restart: where the previous workdir ended
        ax.axvline(max(r["step"] for r in run["rows"] if r["workdir"] == w), color="grey", ls="--", lw=0.8)
    ax.set_xlabel(f"step (batch {run['batch_size']}; dashed: a warm restart)")
    ax.set_ylabel("held-out CE (nats)")
    ax.set_title("held-out loss per stage (dotted: unigram baseline)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = ROOT / "benchmarks" / "figures" / f"{FLAGS.name}.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
