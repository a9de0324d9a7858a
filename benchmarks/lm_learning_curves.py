"""Learning curves of the MAGNeT trainer vs audiocraft's own MagnetSolver step (issue 28).

  python -m benchmarks.lm_learning_curves [--steps=300 --eval_every=25 --runs=ours:0,audiocraft:0,ours:1]

Every run trains the same small MAGNeT LM (the ``bundled`` architecture by default: dim 256, 4 layers, 4 heads,
4 x 1024 codes, a 128-dim text encoder; ``--segment`` s windows) from the *same initial weights* (the trainer's
seeded init, ``training.loop.initial_model``, exported into audiocraft's ``MagnetLMModel`` through
``convert.to_audiocraft_state_dict``) on the *same batches* and with the *same per-step draws*:

* data: the token dataset under ``--data_dir`` (TFDS ArrayRecord of ``magnet_jax``'s tokenizer) through the
  trainer's grain pipeline (``data.input_pipeline.make_dataset``: random crops, description augmentation and
  T5 word dropout as the trainer draws them; seed = the run's seed); the held-out set is the trainer's
  (the first ``--eval_batches`` batches of the eval split, crops at 0, no augmentation). Without a dataset:
  synthetic structured tokens (a per-sample motif in codebook 0, each further codebook a noisy function of the
  one below; the description names the motif's period), see :func:`synthetic_batches`.
* text: the frozen T5 (``--t5``, the bundled 128-dim one by default) run once per batch; both sides get the
  identical hidden states (audiocraft's T5Conditioner projects them: ``tests/reference/magnet_ref``).
* per step: stage, mask rates, span masks and classifier-free-guidance dropout are drawn by the trainer's own
  ``step._prepare`` with the trainer's key (``fold_in(PRNGKey(seed), step)``); ours draws them inside its jitted
  step, the host draws the same ones (checked every step: stage and masked-token count) and feeds them to
  audiocraft's ``MagnetSolver.run_step`` body (its mask / input / loss-mask construction,
  ``compute_predictions``, ``_compute_cross_entropy_magnet``, backward, ``clip_grad_norm_``, AdamW and
  ``CosineLRScheduler`` from audiocraft's ``solvers.builders``). A CFG-dropped batch reaches audiocraft as its
  empty text does (zero mask -> zero condition); audiocraft's text is cut to the batch's longest description,
  as its tokenizer pads.
* held-out: the loss per stage (all 4) of the raw (non-EMA) weights on the fixed held-out batches with the
  trainer's fixed eval draws (``make_eval_step``: key ``PRNGKey(1000 + batch)``, ``fold_in(key, stage)``),
  every ``--eval_every`` steps; audiocraft gets the same masks from the host.

Runs: ``ours:SEED`` (the trainer's jitted ``make_train_step`` / ``make_eval_step``) and ``audiocraft:SEED``; the
seed sets the data order and the per-step draws (the initial weights are ``--init_seed``'s in every run).
``ours:0`` vs ``audiocraft:0`` is the comparison; ``ours:0`` vs ``ours:1`` the run-to-run noise band.
Writes benchmarks/results/lm_learning_curves.json and benchmarks/figures/lm_learning_curves.png.
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags

from benchmarks.common import ROOT, machine, write_json

flags.DEFINE_integer("steps", 300, "training steps per run")
flags.DEFINE_integer("eval_every", 25, "held-out loss every N steps (and at step 0)")
flags.DEFINE_integer("eval_batches", 4, "held-out batches (the bundled trainer's 4)")
flags.DEFINE_list("runs", ["ours:0", "audiocraft:0", "ours:1", "audiocraft:1"], "runs: ours:SEED / audiocraft:SEED")
flags.DEFINE_integer("init_seed", 0, "initial weights (the trainer's seeded init) of every run")
flags.DEFINE_string("data_dir", "/work/bw/W2/tokens", "token dataset (tools/tokenize_dataset.py); "
                    "missing -> synthetic tokens")
flags.DEFINE_string("t5", "/work/bw/W2/t5", "text encoder folder (or 'tiny')")
flags.DEFINE_integer("dim", 256, "model dim")
flags.DEFINE_integer("heads", 4, "attention heads")
flags.DEFINE_integer("layers", 4, "transformer layers")
flags.DEFINE_integer("segment", 5, "window, seconds (integer: audiocraft's MAGNeT attention masks need it)")
flags.DEFINE_integer("batch", 8, "batch size")
flags.DEFINE_float("lr", 1e-3, "peak learning rate (bundled: 1e-3)")
flags.DEFINE_integer("warmup", 30, "warmup steps (cosine to 0 at --steps)")
flags.DEFINE_float("cfg_dropout", 0.3, "classifier-free-guidance dropout (drawn once per step, applied on both)")
flags.DEFINE_integer("smooth", 20, "moving-average window of the training-loss curves (figure, summary)")
flags.DEFINE_integer("threads", 1, "torch intra-op threads (1: a shared CPU's oversubscription stalls more)")
flags.DEFINE_string("json", None, "JSON output (default benchmarks/results/lm_learning_curves.json)")
flags.DEFINE_string("figure", None, "figure (default benchmarks/figures/lm_learning_curves.png)")
flags.DEFINE_bool("plot_only", False, "only redraw the figure from --json (or the default results file)")
flags.DEFINE_string("merge", None, "an earlier JSON of this benchmark (same settings): its runs are kept, not rerun")
FLAGS = flags.FLAGS

KEYS = ("codes", "padding_mask", "text_hidden", "text_mask")


# ----------------------------------------------------------------------------- config
def train_config():
    from magnet_jax.configs import get_config
    from magnet_jax.training import TrainConfig
    c = get_config("bundled")
    c.model.update(dict(dim=FLAGS.dim, num_heads=FLAGS.heads, num_layers=FLAGS.layers,
                        segment_duration=float(FLAGS.segment)))
    c.text.name = FLAGS.t5
    c.update(dict(batch_size=FLAGS.batch, learning_rate=FLAGS.lr, warmup_steps=FLAGS.warmup,
                  total_steps=FLAGS.steps, cfg_dropout=FLAGS.cfg_dropout, seed=FLAGS.init_seed,
                  mesh=dict(data=1, fsdp=1, tensor=1)))
    return TrainConfig.from_config(c)


# ----------------------------------------------------------------------------- data
def synthetic_batches(tok, n: int, B: int, T: int, S: int, card: int, seed: int) -> list[dict]:
    """Structured tokens: codebook 0 tiles a random motif of period p in 4..12 (10 % substitutions); codebook k
    is ``(a_k c_{k-1} + b_k) mod card`` with 20 % noise; the description is "motif period p"."""
    import numpy as np

    from magnet_jax.text import tokenize
    rng = np.random.default_rng(seed)
    a, b = rng.integers(1, card, 4) | 1, rng.integers(0, card, 4)
    out = []
    for _ in range(n):
        codes = np.zeros((B, 4, T), np.int32)
        texts = []
        for i in range(B):
            p = int(rng.integers(4, 13))
            c0 = np.tile(rng.integers(0, card, p), T // p + 1)[:T]
            sub = rng.random(T) < 0.1
            codes[i, 0] = np.where(sub, rng.integers(0, card, T), c0)
            for k in range(1, 4):
                noise = rng.random(T) < 0.2
                codes[i, k] = np.where(noise, rng.integers(0, card, T), (a[k] * codes[i, k - 1] + b[k]) % card)
            texts.append(f"motif period {p}")
        ids, mask = tokenize(tok, texts, pad_to=S)
        out.append({"codes": codes, "padding_mask": np.ones((B, T), bool), "text_ids": ids, "text_mask": mask})
    return out


def make_data(cfg, seeds: list[int]):
    """({seed: training batches}, held-out batches, description), each batch a numpy dict of KEYS."""
    import itertools

    import jax
    import numpy as np

    from magnet_jax.convert.t5 import load_text_stack
    mcfg, d = cfg.model, cfg.data
    T, S = mcfg.segment_frames, int(cfg.text.max_length)
    tok, t5 = load_text_stack(cfg.text.name, mcfg.text_dim)
    from flax import nnx
    t5_graphdef, t5_state = nnx.split(t5.module)
    t5_fn = jax.jit(lambda p, ids, m: nnx.merge(t5_graphdef, p)(ids, m))
    t5_params = nnx.to_pure_dict(t5_state)

    def finish(b):
        hidden = np.asarray(t5_fn(t5_params, np.asarray(b["text_ids"]), np.asarray(b["text_mask"])), np.float32)
        return {"codes": np.asarray(b["codes"], np.int32), "padding_mask": np.asarray(b["padding_mask"], bool),
                "text_hidden": hidden, "text_mask": np.asarray(b["text_mask"], np.int32)}

    try:
        from magnet_jax.data.input_pipeline import data_source, find_builder_dir, make_dataset
        builder_dir = find_builder_dir(FLAGS.data_dir)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"no token dataset ({e}): synthetic structured tokens", flush=True)
        train = {s: [finish(b) for b in synthetic_batches(tok, FLAGS.steps, d.batch_size, T, S, mcfg.card, 100 + s)]
                 for s in seeds}
        held = [finish(b) for b in synthetic_batches(tok, FLAGS.eval_batches, d.batch_size, T, S, mcfg.card, 99)]
        return train, held, {"kind": "synthetic"}

    def dataset(split, train, seed):
        return make_dataset(data_source(builder_dir, split), segment_frames=T, pad_id=mcfg.mask_id, tokenizer=tok,
                            text_len=S, builder_dir=builder_dir, batch_size=d.batch_size, seed=seed,
                            min_segment_ratio=d.min_segment_ratio, sample_on_duration=d.sample_on_duration,
                            merge_text_p=d.merge_text_p, drop_desc_p=d.drop_desc_p, drop_other_p=d.drop_other_p,
                            word_dropout=float(cfg.text.word_dropout) if train else 0.0, train=train)
    train = {s: [finish(b) for b in itertools.islice(iter(dataset(d.train_split, True, s)), FLAGS.steps)]
             for s in seeds}
    held = [finish(b) for b in itertools.islice(iter(dataset("valid", False, 0)), FLAGS.eval_batches)]
    for bs in (*train.values(), held):
        assert all(int(b["codes"].max()) <= mcfg.card for b in bs)      # codes < card, padding = mask id
    return train, held, {"kind": "tokens", "builder_dir": str(builder_dir), "train_split": d.train_split,
                         "eval_split": "valid", "train_examples": len(data_source(builder_dir, d.train_split)),
                         "eval_examples": len(held) * d.batch_size}


# ----------------------------------------------------------------------------- the shared draws
def make_drawers(cfg, held):
    """Host versions of the trainer's per-step / eval draws (the same ``step._prepare``, the same keys)."""
    import functools

    import jax
    import numpy as np

    from magnet_jax.training.step import _prepare
    s, mcfg = cfg.step, cfg.model
    train_j = jax.jit(lambda b, key: _prepare(s, mcfg, b, key))
    eval_j = jax.jit(lambda b, key, stage: _prepare(s, mcfg, b, key, stage=stage), static_argnums=2)

    def host(p):
        return {k: np.asarray(v) for k, v in p.items()}

    def train_draw(b, seed: int, step: int):
        return host(train_j(b, jax.random.fold_in(jax.random.PRNGKey(seed), step)))

    @functools.lru_cache(maxsize=None)
    def eval_draw(i: int, stage: int):
        """The eval step's draw for held-out batch ``i`` at ``stage`` (make_eval_step's keys)."""
        return host(eval_j(held[i], jax.random.fold_in(jax.random.PRNGKey(1000 + i), stage), stage))
    return train_draw, eval_draw


# ----------------------------------------------------------------------------- ours
def run_ours(cfg, graphdef, params0, param_specs, batches, held, seed, train_draw):
    import jax
    import numpy as np

    from magnet_jax import sharding
    from magnet_jax.training import state as S
    from magnet_jax.training.optim import finite_update_bound, make_optimizer, make_schedule
    from magnet_jax.training.step import make_eval_step, make_train_step
    mesh = sharding.make_mesh(data=1, devices=jax.devices()[:1])
    tx = make_optimizer(cfg.optim)
    specs = S.state_specs(tx, params0, param_specs)
    state = S.init_state(tx, jax.tree.map(np.array, params0), specs, mesh)
    b_sh = sharding.batch_shardings(KEYS, mesh)
    step_fn = make_train_step(graphdef, None, cfg.step, tx, make_schedule(cfg.optim), cfg.model, specs, mesh, KEYS,
                              update_bound=finite_update_bound(cfg.optim))
    eval_fn = make_eval_step(graphdef, None, cfg.model, param_specs, mesh, KEYS, cfg.step)
    put = lambda b: jax.device_put({k: b[k] for k in KEYS}, b_sh)  # noqa: E731
    held_dev = [put(b) for b in held]
    seed_key = jax.random.PRNGKey(seed)

    def evaluate(st):
        return np.mean([np.asarray(eval_fn(st.params, b, None, jax.random.PRNGKey(1000 + i)))
                        for i, b in enumerate(held_dev)], 0).tolist()

    rows, evals = [], []
    t0 = time.perf_counter()
    with sharding.use_mesh(mesh):
        evals.append({"step": 0, "loss": evaluate(state)})
        for i, b in enumerate(batches):
            state, m = step_fn(state, put(b), None, seed_key)
            m = {k: float(v) for k, v in jax.device_get(m).items()}
            d = train_draw(b, seed, i)          # what the step drew inside jit, drawn again on the host
            assert int(m["stage"]) == int(d["stage"]) and m["num_tokens"] == float(d["weights"].sum()), (m, i)
            rows.append({"step": i + 1, "loss": m["loss"], "stage": int(m["stage"]), "lr": m["learning_rate"],
                         "grad_norm": m["grad_norm"], "num_tokens": m["num_tokens"],
                         "cfg_dropped": bool(d["text_mask"].sum() == 0 and b["text_mask"].sum() > 0)})
            if (i + 1) % FLAGS.eval_every == 0 or i + 1 == len(batches):
                evals.append({"step": i + 1, "loss": evaluate(state), "elapsed_s": time.perf_counter() - t0})
                log("ours", seed, rows, evals)
    return rows, evals


# ----------------------------------------------------------------------------- audiocraft
def reference_model(cfg, graphdef, params0):
    """audiocraft's MagnetLMModel (its own builder) holding our initial weights."""
    import numpy as np
    import torch
    from flax import nnx

    from magnet_jax.convert import to_audiocraft_state_dict
    from tests.reference import magnet_ref as R
    m = cfg.model
    xp = R.magnet_xp_cfg(dim=m.dim, num_heads=m.num_heads, num_layers=m.num_layers, n_q=m.n_q, card=m.card,
                         subcodes_context=m.subcodes_context, segment_duration=int(m.segment_duration),
                         t5_name="t5-small", hidden_scale=m.hidden_scale)
    xp["transformer_lm"]["span_len"] = m.span_len
    ref = R.build_reference(xp)
    cond = ref.condition_provider.conditioners["description"]
    cond.output_proj = torch.nn.Linear(m.text_dim, m.dim)    # the T5 width of this model (no audiocraft preset)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in to_audiocraft_state_dict(nnx.merge(graphdef, params0)).items()}
    ref.load_state_dict(sd, strict=True)
    return ref.train()


def ac_loss(ref, b, d, stage_: int, mask_id: int):
    """audiocraft MagnetSolver.run_step's loss with the stage and span mask of draw ``d`` (ours)."""
    import numpy as np
    import torch
    from audiocraft.solvers.magnet import MagnetSolver

    from tests.reference import magnet_ref as R
    audio_tokens = torch.from_numpy(np.array(b["codes"], np.int64))
    B, K, T = audio_tokens.shape
    stage_mask = torch.from_numpy(np.array(d["inputs"][:, stage_] == mask_id)).unsqueeze(1)   # [B, 1, T] (ours' draw)
    padding_mask = torch.from_numpy(np.array(b["padding_mask"]))[:, None, :].expand(B, K, T)
    # text as audiocraft's tokenizer gives it: padded to the batch's longest description; CFG dropout = mask 0
    longest = max(int((b["text_mask"] > 0).sum(-1).max()), 1)
    hidden = torch.from_numpy(np.array(b["text_hidden"][:, :longest]))
    tmask = torch.from_numpy(np.array(d["text_mask"][:, :longest], np.int64))
    condition_tensors = R.condition_tensors(ref, hidden, tmask, grad=torch.is_grad_enabled())
    # ---- from here audiocraft 1.3.0 MagnetSolver.run_step, verbatim but for the draws
    stage = torch.full((1, ), stage_)
    mask = torch.full((B, K, T), False)
    mask[:, stage, :] = stage_mask
    mask[:, (stage_ + 1):, :] = torch.full((B, K - stage_ - 1, T), True)
    input_tokens = torch.where(mask, mask_id, audio_tokens)
    loss_mask = torch.full((B, K, T), False)
    loss_mask[:, stage, :] = stage_mask
    assert np.array_equal(input_tokens.numpy(), d["inputs"]), "audiocraft's input differs from ours"
    model_output = ref.compute_predictions(input_tokens, [], condition_tensors, stage=stage_)
    loss_mask &= padding_mask
    return MagnetSolver._compute_cross_entropy_magnet(None, model_output.logits, audio_tokens, loss_mask, stage)


def run_audiocraft(cfg, ref, batches, held, seed, train_draw, eval_draw):
    import numpy as np
    import torch
    from audiocraft.solvers import builders
    from omegaconf import OmegaConf
    o, mask_id = cfg.optim, cfg.model.mask_id
    ocfg = OmegaConf.create({"optimizer": "adamw", "lr": o.learning_rate, "max_norm": o.max_grad_norm,
                             "adam": {"betas": [o.b1, o.b2], "weight_decay": o.weight_decay, "eps": o.eps},
                             "lr_scheduler": "cosine",
                             "cosine": {"warmup": o.warmup_steps, "lr_min_ratio": o.lr_min_ratio,
                                        "cycle_length": 1.0}})
    opt = builders.get_optimizer(ref, ocfg)                  # magnet_32khz: AdamW, betas .9/.95, wd .1
    sched = builders.get_lr_scheduler(opt, ocfg, o.total_steps)

    def evaluate():
        ref.eval()
        with torch.no_grad():
            out = [[float(ac_loss(ref, b, eval_draw(i, s), s, mask_id)) for s in range(cfg.model.n_q)]
                   for i, b in enumerate(held)]
        ref.train()
        return np.mean(out, 0).tolist()

    rows, evals = [], []
    t0 = time.perf_counter()
    evals.append({"step": 0, "loss": evaluate()})
    for i, b in enumerate(batches):
        d = train_draw(b, seed, i)
        lr = opt.param_groups[0]["lr"]
        loss = ac_loss(ref, b, d, int(d["stage"]), mask_id)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), ocfg.max_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
        rows.append({"step": i + 1, "loss": loss.item(), "stage": int(d["stage"]), "lr": lr,
                     "grad_norm": float(grad_norm), "num_tokens": float(d["weights"].sum())})
        if (i + 1) % FLAGS.eval_every == 0 or i + 1 == len(batches):
            evals.append({"step": i + 1, "loss": evaluate(), "elapsed_s": time.perf_counter() - t0})
            log("audiocraft", seed, rows, evals)
    return rows, evals


def log(name, seed, rows, evals):
    import numpy as np
    e = evals[-1]
    recent = np.mean([r["loss"] for r in rows[-FLAGS.eval_every:]])
    print(f"[{name}:{seed}] step {e['step']:4d}  train {recent:.3f}  held-out per stage "
          f"{[round(x, 3) for x in e['loss']]}  ({e.get('elapsed_s', 0):.0f}s)", flush=True)


# ----------------------------------------------------------------------------- summary and figure
def moving_average(x, w: int):
    import numpy as np
    x = np.asarray(x, np.float64)
    c = np.cumsum(np.insert(x, 0, 0.0))
    return np.asarray([(c[i + 1] - c[max(0, i + 1 - w)]) / (i + 1 - max(0, i + 1 - w)) for i in range(len(x))])


def _evals(run):
    import numpy as np
    return np.asarray([e["loss"] for e in run["eval"]])          # [eval points, stages]


def _train(run):
    import numpy as np
    return np.asarray([x["loss"] for x in run["train"]])


def summarize(runs: dict) -> dict:
    """Gap = ours:s vs audiocraft:s (same data, draws, init); band = two runs of one implementation with
    different seeds (data order and draws). Held-out points after step 0 (identical weights there)."""
    import itertools

    import numpy as np
    w = FLAGS.smooth
    seeds = lambda impl: sorted(int(k.split(":")[1]) for k in runs if k.startswith(impl + ":"))  # noqa: E731
    out = {"steps": [e["step"] for e in next(iter(runs.values()))["eval"]]}
    gaps, bands, pairs = [], [], {}
    for s in sorted(set(seeds("ours")) & set(seeds("audiocraft"))):
        o, r = runs[f"ours:{s}"], runs[f"audiocraft:{s}"]
        lo, lr_ = _train(o), _train(r)
        n = min(20, len(lo))
        eo, er = _evals(o), _evals(r)
        g = np.abs(eo - er)[1:]
        gaps.append(g)
        pairs[f"seed{s}"] = {
            "first20_ours": lo[:n].tolist(), "first20_audiocraft": lr_[:n].tolist(),
            "first20_max_abs_diff": float(np.max(np.abs(lo[:n] - lr_[:n]))),
            "first20_max_rel_diff": float(np.max(np.abs(lo[:n] - lr_[:n]) / np.abs(lr_[:n]))),
            "train_mean_abs_diff_per_100_steps": [float(np.mean(np.abs(lo[i:i + 100] - lr_[i:i + 100])))
                                                  for i in range(0, len(lo), 100)],
            "train_smoothed_gap_max": float(np.max(np.abs(moving_average(lo, w) - moving_average(lr_, w))[w:]))
            if len(lo) > w else None,
            "heldout_ours": eo.tolist(), "heldout_audiocraft": er.tolist(),
            "heldout_gap_max": float(g.max()), "heldout_gap_mean": float(g.mean()),
            "heldout_gap_signed_mean_ours_minus_audiocraft": float((eo - er)[1:].mean()),
            "heldout_stage_mean_gap_max": float(np.abs(eo.mean(1) - er.mean(1))[1:].max()),
        }
    out["pairs"] = pairs
    band_info = {}
    for impl in ("ours", "audiocraft"):
        for s, t in itertools.combinations(seeds(impl), 2):
            a, b = runs[f"{impl}:{s}"], runs[f"{impl}:{t}"]
            band = np.abs(_evals(a) - _evals(b))[1:]
            bands.append(band)
            la, lb = _train(a), _train(b)
            band_info[f"{impl}:{s}-{t}"] = {
                "heldout_band_max": float(band.max()), "heldout_band_mean": float(band.mean()),
                "heldout_stage_mean_band_max": float(np.abs(_evals(a).mean(1) - _evals(b).mean(1))[1:].max()),
                "train_smoothed_band_max": float(np.max(np.abs(moving_average(la, w) - moving_average(lb, w))[w:]))
                if len(la) > w else None}
    out["bands"] = band_info
    if gaps and bands:
        G, B = np.stack(gaps), np.stack(bands)
        out["verdict"] = {
            "heldout_gap_max": float(G.max()), "heldout_gap_mean": float(G.mean()),
            "heldout_band_max": float(B.max()), "heldout_band_mean": float(B.mean()),
            # per (eval step, stage) point: is every gap below the smallest band there
            "points_gap_below_min_band": float(np.mean(G.max(0) <= B.min(0))),
            "gap_inside_band": bool(G.max() <= B.max() and G.mean() <= B.mean())}
    return out


def figure(runs: dict, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    n_q = _evals(next(iter(runs.values()))).shape[1]
    fig = plt.figure(figsize=(14, 6.5))
    gs = fig.add_gridspec(2, n_q)
    ax0, axd = fig.add_subplot(gs[0, :n_q - 1]), fig.add_subplot(gs[0, n_q - 1])
    axes = [fig.add_subplot(gs[1, s]) for s in range(n_q)]
    for k in runs:                                 # per-step |ours - audiocraft| on identical batches and draws
        if k.startswith("ours:") and "audiocraft:" + k[5:] in runs:
            diff = np.abs(_train(runs[k]) - _train(runs["audiocraft:" + k[5:]]))
            axd.semilogy(np.arange(1, len(diff) + 1), np.maximum(diff, 1e-8), lw=0.8, label=f"seed {k[5:]}")
    axd.set(title="|train loss ours - audiocraft|", xlabel="step")
    axd.grid(alpha=0.3)
    axd.legend(fontsize=8)
    colors = {("ours", 0): "C0", ("audiocraft", 0): "C3", ("ours", 1): "C9", ("audiocraft", 1): "C1"}
    for k, run in runs.items():
        impl, seed = k.split(":")[0], int(k.split(":")[1])
        color, ls = colors.get((impl, seed), "0.5"), "-" if impl == "ours" else "--"
        loss = _train(run)
        ax0.plot(np.arange(1, len(loss) + 1), moving_average(loss, FLAGS.smooth), color=color, ls=ls, lw=1.3,
                 label=f"{'magnet-jax' if impl == 'ours' else 'audiocraft'} seed {seed}")
        steps = [e["step"] for e in run["eval"]]
        ev = _evals(run)
        for s, ax in enumerate(axes):
            ax.plot(steps, ev[:, s], color=color, ls=ls, marker="o" if impl == "ours" else "x", ms=3, lw=1.1)
    ax0.set(title=f"training loss, {FLAGS.smooth}-step moving average (stage drawn per step; same seed = same "
                  f"batches, draws and initial weights)", xlabel="step", ylabel="masked CE")
    ax0.legend(fontsize=8, ncol=2)
    for s, ax in enumerate(axes):
        ax.set(title=f"held-out loss, stage {s}", xlabel="step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("masked CE (raw weights)")
    ax0.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


# ----------------------------------------------------------------------------- main
def main(_):
    from pathlib import Path
    fig_path = Path(FLAGS.figure) if FLAGS.figure else ROOT / "benchmarks" / "figures" / "lm_learning_curves.png"
    if FLAGS.plot_only:
        figure(json.load(open(FLAGS.json or ROOT / "benchmarks" / "results" / "lm_learning_curves.json"))["runs"],
               fig_path)
        return

    import jax
    import torch

    import tests.reference.shim  # noqa: F401  (before audiocraft)
    from magnet_jax import sharding
    from magnet_jax.training.loop import initial_model
    torch.set_num_threads(FLAGS.threads)
    runs_spec = [(s.split(":")[0], int(s.split(":")[1]) if ":" in s else 0) for s in FLAGS.runs]
    cfg = train_config()
    t0 = time.perf_counter()
    train, held, data_info = make_data(cfg, sorted({s for _, s in runs_spec}))
    print(f"data: {data_info} ({time.perf_counter() - t0:.0f}s)", flush=True)
    train_draw, eval_draw = make_drawers(cfg, held)
    mesh = sharding.make_mesh(data=1, devices=jax.devices()[:1])
    graphdef, params0, param_specs = initial_model("", FLAGS.init_seed, cfg.model, mesh)
    params0 = jax.device_get(params0)
    results = {}
    settings = dict(steps=FLAGS.steps, eval_every=FLAGS.eval_every, eval_batches=FLAGS.eval_batches,
                    init_seed=FLAGS.init_seed, model=cfg.model.architecture(), batch_size=cfg.data.batch_size,
                    lr=cfg.optim.learning_rate, warmup=cfg.optim.warmup_steps, cfg_dropout=cfg.step.cfg_dropout)
    if FLAGS.merge and os.path.exists(FLAGS.merge):
        old = json.load(open(FLAGS.merge))
        if old.get("settings") != json.loads(json.dumps(settings)):
            raise ValueError(f"--merge={FLAGS.merge} was run with other settings: {old.get('settings')}")
        results.update({k: v for k, v in old["runs"].items() if k in [f"{n}:{s}" for n, s in runs_spec]})
        print(f"kept from {FLAGS.merge}: {sorted(results)}", flush=True)
    m = cfg.model
    for name, seed in runs_spec:
        if f"{name}:{seed}" in results:
            continue
        t = time.perf_counter()
        if name == "ours":
            rows, evals = run_ours(cfg, graphdef, params0, param_specs, train[seed], held, seed, train_draw)
        elif name == "audiocraft":
            ref = reference_model(cfg, graphdef, params0)
            rows, evals = run_audiocraft(cfg, ref, train[seed], held, seed, train_draw, eval_draw)
        else:
            raise ValueError(f"unknown run {name!r} (ours, audiocraft)")
        results[f"{name}:{seed}"] = {"seconds": time.perf_counter() - t, "train": rows, "eval": evals,
                                     "machine": machine(), "loadavg_at_end": os.getloadavg()}
        print(f"[{name}:{seed}] done in {time.perf_counter() - t:.0f}s", flush=True)
        summary = summarize(results)
        payload = dict(benchmark="lm_learning_curves", settings=settings,
                       model=dict(dim=m.dim, heads=m.num_heads, layers=m.num_layers, n_q=m.n_q, card=m.card,
                                  text_dim=m.text_dim, segment_s=m.segment_duration, frames=m.segment_frames),
                       optim=dict(optimizer="adamw", lr=cfg.optim.learning_rate, warmup=cfg.optim.warmup_steps,
                                  schedule=cfg.optim.schedule, total_steps=cfg.optim.total_steps, b1=cfg.optim.b1,
                                  b2=cfg.optim.b2, weight_decay=cfg.optim.weight_decay, eps=cfg.optim.eps,
                                  max_grad_norm=cfg.optim.max_grad_norm),
                       batch_size=cfg.data.batch_size, cfg_dropout=cfg.step.cfg_dropout, t5=cfg.text.name,
                       data=data_info, heldout_weights="raw (not EMA)", torch_threads=FLAGS.threads,
                       machine=machine(), loadavg=os.getloadavg(), summary=summary, runs=results)
        write_json("lm_learning_curves", payload, FLAGS.json)
    summary = summarize(results)
    figure(results, fig_path)
    short = lambda d: {k: v for k, v in d.items() if not isinstance(v, list)}  # noqa: E731
    for k, v in summary["pairs"].items():
        print(f"gap {k}: {short(v)}")
    for k, v in summary["bands"].items():
        print(f"band {k}: {v}")
    print(f"verdict: {summary.get('verdict')}")


if __name__ == "__main__":
    app.run(main)
