"""How much does the LM use its text? Held-out loss per stage with each clip's own description, with another
clip's, and with the null condition (classifier-free guidance's zero text).

  python -m benchmarks.text_information --workdir=W [--lm=NAME=EXPORT ...] [--eval_batches=16]

``--workdir``: a ``tools/train.py`` workdir; its recorded config gives the dataset, the held-out split, the text
encoder and the architecture. Each ``--lm`` is a magnet_jax / audiocraft export of that architecture (default:
the workdir's own export); ``random-init`` (the trainer's seeded init) is always added. On the trainer's fixed
held-out batches (crops at 0, no augmentation) with the trainer's fixed eval masks
(``jobs.finetune_eval.text_losses``), the loss of every stage is computed three times:

* ``own``: each clip with its description (what ``eval_loss_stage{k}`` in the training metrics is);
* ``other``: each clip with another clip's description (the batch's descriptions rolled by one);
* ``null``: the zero text mask, the condition CFG dropout trains and guidance subtracts.

``other - own`` (nats per token) is the information the description carries about the clip that the LM uses;
``null - own`` the same against no text. A random-init LM or an LM that ignores its text gives ~0 for both.
Writes ``benchmarks/results/text_information.json``; ``python -m benchmarks.tables text_information``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from absl import app, flags

flags.DEFINE_string("workdir", None, "tools/train.py workdir (its config.json: data, text encoder, architecture)")
flags.DEFINE_multi_string("lm", [], "NAME=EXPORT_FOLDER of an LM of that architecture (default: WORKDIR/export)")
flags.DEFINE_integer("eval_batches", 16, "held-out batches (the trainer's eval form)")
flags.DEFINE_string("out", None, "JSON output (default benchmarks/results/text_information.json)")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.workdir:
        raise app.UsageError("--workdir=W (a tools/train.py workdir) is required")
    import dataclasses

    from benchmarks.common import machine, write_json
    from magnet_jax.jobs.finetune_eval import text_losses
    from magnet_jax.training.trained_lm import EXPORT_DIR, train_config

    cfg, _ = train_config(FLAGS.workdir)
    if not cfg.data.eval_split:
        raise app.UsageError(f"{FLAGS.workdir}: its config has no eval_split (the held-out split)")
    cfg = dataclasses.replace(cfg, loop=dataclasses.replace(cfg.loop, eval_batches=FLAGS.eval_batches))
    lms = dict(spec.split("=", 1) for spec in FLAGS.lm) or {"export": str(Path(FLAGS.workdir) / EXPORT_DIR)}
    lms["random-init"] = ""
    t0 = time.time()
    rows = {}
    for name, path in lms.items():
        got = text_losses(cfg, path)
        row = {t: [v[f"eval_loss_stage{k}"] for k in range(cfg.model.n_q)] for t, v in got.items()}
        row["other_minus_own"] = [o - w for o, w in zip(row["other"], row["own"])]
        row["null_minus_own"] = [o - w for o, w in zip(row["null"], row["own"])]
        rows[name] = dict(path=path or None, **row)
        print(f"{name:16s} own {np.round(row['own'], 3)}  other - own {np.round(row['other_minus_own'], 3)}  "
              f"null - own {np.round(row['null_minus_own'], 3)}", flush=True)
    out = {"benchmark": "text_information", "machine": machine(), "workdir": str(FLAGS.workdir),
           "eval_split": cfg.data.eval_split, "eval_batches": FLAGS.eval_batches, "batch_size": cfg.data.batch_size,
           "text": cfg.text.name, "rows": rows, "wall_s": time.time() - t0}
    write_json("text_information", out, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
