"""Held-out learning curves of the codec trainer vs audiocraft's CompressionSolver step (issue 27).

  python -m benchmarks.codec_learning_curves --audio_dir=TRAIN --eval_audio_dir=VALID --steps=300 \
      --eval_every=20 --json=OUT [--runs=ours,audiocraft,gan_free,dead0,dead05,lr1e3]

Every run trains the ``--config`` (default ``tiny``) codec with ``--adv`` / ``--feat`` (default audiocraft's
4 / 4: the recipe issue 27 was about; ``tiny`` itself is GAN-free since) and ``--eval_batches`` (default 2,
``tiny``'s value then) on the *same* precomputed batches (the
trainer's grain pipeline: the same random crops, in the same order) and evaluates every
``--eval_every`` steps on two held-out sets:

* ``trainer``: exactly the trainer's held-out set (``input_pipeline.eval_batches``: the consecutive
  crops of the sorted eval files, ``eval_batches`` batches -- for ``tiny`` the first 8 s of the first
  file only);
* ``wide``: ``--wide_crops`` crops per eval file at evenly spaced offsets (every file represented).

Per eval point: mel distance / msspec / SI-SNR / L1 / perplexity per codebook of the EMA generator
(as the trainer evaluates; audiocraft validates on its EMA state too), of the raw generator and (ours)
of the EMA weights with the raw codebooks; the mean training msspec / l1 / adv / feat / d_loss and
balancer ratios over the interval; the mean number of codes per codebook under the dead-code threshold
(ours replaces them; audiocraft's ``replace_`` is overwritten by the EMA step in the same forward).

Runs: ``ours`` (magnet_jax.codec_training.step, jitted) and ``audiocraft`` (EncodecModel +
MultiScaleSTFTDiscriminator + AdversarialLoss + msspec / L1 + Balancer + Adam + ModuleDictEMA, in
CompressionSolver.run_step order) start from the same generator and discriminator weights (ours
exported into the torch EncodecModel, the torch discriminator copied into ours); only the k-means
initialisation draws differ. Ablations on ours: ``gan_free``, ``dead0`` / ``dead05`` (dead-code
threshold 0 / 0.5), ``lr1e3`` (Adam lr 1e-3), plus anything given as ``name:field=value;field=value``
(e.g. ``fix:losses.adv=0;losses.feat=0;rvq.threshold_ema_dead_code=0``).
Writes benchmarks/results/codec_learning_curves.json (or --json).
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags

from benchmarks.common import ROOT, machine, write_json

flags.DEFINE_string("audio_dir", None, "training audio folder")
flags.DEFINE_string("eval_audio_dir", None, "held-out audio folder")
flags.DEFINE_string("config", "tiny", "configs/codec.py config name")
flags.DEFINE_integer("steps", 300, "training steps per run")
flags.DEFINE_integer("eval_every", 20, "evaluate every N steps (and at step 0 and the end)")
flags.DEFINE_integer("wide_crops", 4, "crops per held-out file in the 'wide' eval set")
flags.DEFINE_list("runs", ["ours", "audiocraft", "gan_free", "dead0", "dead05", "lr1e3"],
                  "runs: ours, audiocraft, gan_free, dead0, dead05, lr1e3 or NAME:field=value;field=value")
flags.DEFINE_integer("seed", 0, "config seed")
flags.DEFINE_float("adv", 4.0, "adversarial weight of every run unless it overrides it (issue 27: audiocraft's 4)")
flags.DEFINE_float("feat", 4.0, "feature-matching weight of every run unless it overrides it (audiocraft's 4)")
flags.DEFINE_integer("eval_batches", 2, "the trainer's held-out batches (the 'trainer' set; 2 = tiny before issue 27)")
flags.DEFINE_integer("threads", 1, "torch intra-op threads")
flags.DEFINE_string("json", None, "JSON output path (default benchmarks/results/codec_learning_curves.json)")
flags.DEFINE_string("merge", None, "an earlier JSON of this benchmark whose runs are kept (unless rerun)")
FLAGS = flags.FLAGS

ABLATIONS = {
    "ours": {},
    "gan_free": {"losses.adv": 0.0, "losses.feat": 0.0},
    "dead0": {"rvq.threshold_ema_dead_code": 0.0},
    "dead05": {"rvq.threshold_ema_dead_code": 0.5},
    "lr1e3": {"optim.lr": 1e-3},
}


def load_config(name: str, overrides: dict | None = None):
    import importlib.util
    spec = importlib.util.spec_from_file_location("codec_configs", ROOT / "configs" / "codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config(name)
    c.mesh.data = 1
    for k, v in (overrides or {}).items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = type(node[last])(v) if not isinstance(node[last], tuple) else v
    return c


def parse_run(spec: str) -> tuple[str, dict]:
    if ":" not in spec:
        if spec == "audiocraft" or spec in ABLATIONS:
            return spec, dict(ABLATIONS.get(spec, {}))
        raise ValueError(f"unknown run {spec!r}")
    name, rest = spec.split(":", 1)
    out = {}
    for kv in filter(None, rest.split(";")):
        k, v = kv.split("=", 1)
        out[k] = float(v)
    return name, out


# ----------------------------------------------------------------------------- data
def make_data(cfg, steps: int, wide_crops: int):
    """(training batches [steps], trainer eval batches, wide eval batches, file lists)."""
    import numpy as np

    from magnet_jax.codec_training import input_pipeline as ip
    from magnet_jax.data.audio_io import load_audio
    sr, C = int(cfg.model.sample_rate), int(cfg.model.channels)
    seg = int(round(float(cfg.segment_seconds) * sr))
    train_files = ip.list_files("", FLAGS.audio_dir)
    eval_files = ip.list_files("", FLAGS.eval_audio_dir)
    it = iter(ip.make_dataset(train_files, sample_rate=sr, channels=C, segment=seg, batch_size=int(cfg.batch_size),
                              seed=int(cfg.seed), train=True))
    batches = [np.asarray(next(it), np.float32) for _ in range(steps)]
    trainer = ip.eval_batches(eval_files, sample_rate=sr, channels=C, segment=seg, batch_size=int(cfg.batch_size),
                              max_batches=int(cfg.eval_batches))
    crops = []
    for p in eval_files:
        wav, _, _ = load_audio(p, sr, C)
        n = wav.shape[-1]
        for k in range(wide_crops):
            start = int((n - seg) * (k + 0.5) / wide_crops) if n > seg else 0
            c = wav[:, start:start + seg]
            crops.append(np.pad(c, ((0, 0), (0, seg - c.shape[-1]))))
    B = int(cfg.batch_size)
    crops = crops[:len(crops) // B * B]
    wide = [np.stack(crops[i:i + B]).astype(np.float32) for i in range(0, len(crops), B)]
    return batches, {"trainer": trainer, "wide": wide}, train_files, eval_files


def perplexity_np(codes, bins):
    """codes [B, K, T] -> per-codebook exp(entropy)."""
    import numpy as np
    out = []
    for k in range(codes.shape[1]):
        p = np.bincount(codes[:, k].reshape(-1), minlength=bins) / codes[:, k].size
        p = p[p > 0]
        out.append(float(np.exp(-np.sum(p * np.log(p)))))
    return out


def make_metric_fn(cfg):
    import jax

    from magnet_jax.codec_training import losses
    from magnet_jax.codec_training.step import mel_kwargs, msspec_kwargs
    ms_kw, mel_kw = msspec_kwargs(cfg), mel_kwargs(cfg)
    sr, seg = int(cfg.model.sample_rate), float(cfg.sisnr.segment) or None

    @jax.jit
    def fn(recon, wav):
        return {"mel": losses.mel_loss(recon, wav, **mel_kw), "msspec": losses.msspec_loss(recon, wav, **ms_kw),
                "sisnr": losses.sisnr(recon, wav, sample_rate=sr, segment=seg), "l1": losses.l1_loss(recon, wav)}
    return fn


def _mean_rows(rows):
    import numpy as np
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# ----------------------------------------------------------------------------- reference
def torch_disc(cfg, seed):
    import torch
    from audiocraft import adversarial as A
    d = cfg.msstftd
    torch.manual_seed(seed)
    return A.MultiScaleSTFTDiscriminator(filters=int(d.filters), in_channels=1, out_channels=1, norm="weight_norm",
                                         n_ffts=list(d.n_ffts), hop_lengths=list(d.hop_lengths),
                                         win_lengths=list(d.win_lengths), activation="LeakyReLU",
                                         activation_params={"negative_slope": float(d.negative_slope)})


def disc_params_from_torch(cfg, ref):
    """Our discriminator's pure param dict holding the torch discriminator's weights."""
    import jax.numpy as jnp
    from flax import nnx

    from magnet_jax.codec_training.discriminator import make_discriminator
    ours = make_discriminator(cfg.msstftd, 1, nnx.Rngs(0))
    hwio = lambda t: jnp.asarray(t.detach().numpy().transpose(2, 3, 1, 0))  # noqa: E731
    for d_ref, d in zip(ref.discriminators, ours.discriminators):
        for c_ref, c in zip(list(d_ref.convs) + [d_ref.conv_post], list(d.convs) + [d.conv_post]):
            conv = c_ref.conv
            if c.weight_norm:
                c.v[...] = hwio(conv.weight_v)
                c.g[...] = jnp.asarray(conv.weight_g.detach().numpy().reshape(-1))
            else:
                c.w[...] = hwio(conv.weight)
            c.bias[...] = jnp.asarray(conv.bias.detach().numpy())
    return nnx.to_pure_dict(nnx.state(ours))


def torch_generator(cfg, graphdef, params, codebook):
    """audiocraft's EncodecModel with our initial weights (fresh, un-initialised codebooks)."""
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    from magnet_jax.codec.training_model import export_inference_codec
    from magnet_jax.codec_training.loop import codec_config, rvq_config
    from magnet_jax.convert.encodec_export import audiocraft_xp_cfg, state_dict
    ccfg = codec_config(cfg)
    model = builders.get_compression_model(OmegaConf.create(audiocraft_xp_cfg(ccfg, rvq_config(cfg))))
    sd = state_dict(export_inference_codec(graphdef, params, codebook), "audiocraft")
    sd = {k: torch.from_numpy(v) for k, v in sd.items() if ".vq." not in k}
    for k in [k for k in sd if ".bias_ih_l" in k]:   # split b = b_ih + b_hh evenly
        hh = k.replace("bias_ih", "bias_hh")
        sd[k], sd[hh] = sd[k] / 2, sd[k] / 2
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(".vq." in k for k in missing), (missing, unexpected)
    return model.train()


def run_audiocraft(cfg, model, eval_model, disc, batches, evalsets, metric_fn, eval_every, log):
    """CompressionSolver.run_step (training) + ModuleDictEMA; valid on the EMA state."""
    import torch
    from audiocraft import adversarial as A
    from audiocraft import losses as L
    from audiocraft.optim.ema import ModuleDictEMA
    m, ms = cfg.model, cfg.msspec
    adam = dict(lr=float(cfg.optim.lr), betas=(float(cfg.optim.b1), float(cfg.optim.b2)), eps=float(cfg.optim.eps))
    adv = A.AdversarialLoss(disc, torch.optim.Adam(disc.parameters(), **adam), loss=A.losses.hinge_loss,
                            loss_real=A.losses.hinge_real_loss, loss_fake=A.losses.hinge_fake_loss,
                            loss_feat=A.FeatureMatchingLoss(torch.nn.L1Loss(), True), normalize=True)
    msspec = L.MultiScaleMelSpectrogramLoss(int(m.sample_rate), range_start=int(ms.range_start),
                                            range_end=int(ms.range_end), n_mels=int(ms.n_mels),
                                            f_min=float(ms.f_min), f_max=(float(ms.f_max) or None),
                                            normalized=bool(ms.normalized), alphas=bool(ms.alphas),
                                            floor_level=float(ms.floor_level))
    weights = {"adv_msstftd": float(cfg.losses.adv), "feat_msstftd": float(cfg.losses.feat),
               "l1": float(cfg.losses.l1), "msspec": float(cfg.losses.msspec)}
    b = cfg.balancer
    bal = L.Balancer(weights, balance_grads=bool(b.balance_grads), total_norm=float(b.total_norm),
                     ema_decay=float(b.ema_decay), per_batch_item=bool(b.per_batch_item))
    opt = torch.optim.Adam(model.parameters(), **adam)
    ema = ModuleDictEMA(torch.nn.ModuleDict({"model": model}), decay=float(cfg.ema_decay))
    thr = float(cfg.rvq.threshold_ema_dead_code)
    bins = int(m.bins)

    @torch.no_grad()
    def evaluate(first=False):
        out = {}
        eval_model.load_state_dict(ema.state_dict()["state"]["model"])
        nets = (("ema", eval_model), ("raw", model))
        if first:
            # audiocraft's EuclideanCodebook k-means-initialises on *any* forward, eval mode included: before
            # the first training step neither model may see held-out audio (that would initialise the
            # training codebooks from it). Step 0 is the EMA copy with its zero codebooks marked initialised
            # (= our un-initialised eval: decoder(0)); raw = EMA there.
            for layer in eval_model.quantizer.vq.layers:
                layer._codebook.inited.fill_(1.0)
            nets = nets[:1]
        for tag, net in nets:
            was = net.training
            net.eval()
            for name, bs in evalsets.items():
                rows = []
                for wav in bs:
                    q = net(torch.from_numpy(wav))
                    r = {k: float(v) for k, v in metric_fn(q.x.numpy(), wav).items()}
                    for k, p in enumerate(perplexity_np(q.codes.numpy(), bins)):
                        r[f"perplexity_q{k}"] = p
                    rows.append(r)
                out.update({f"{tag}_{name}_{k}": v for k, v in _mean_rows(rows).items()})
            net.train(was)
        if first:
            out.update({"raw" + k[3:]: v for k, v in out.items()})
        return out

    curve, acc = [], []
    t0 = time.perf_counter()
    curve.append({"step": 0, **evaluate(first=True)})
    for i, wav in enumerate(batches):
        x = torch.from_numpy(wav)
        cbs = [layer._codebook for layer in model.quantizer.vq.layers]
        dead = [float((cb.cluster_size < thr).sum()) if cb.inited.item() else 0.0 for cb in cbs]
        qres = model(x)
        y_pred = qres.x
        row = {}
        if weights["adv_msstftd"] > 0 or weights["feat_msstftd"] > 0:
            row["d_loss"] = float(adv.train_adv(y_pred, x))
            a, f = adv(y_pred, x)
            losses = {"adv_msstftd": a, "feat_msstftd": f}
        else:
            losses = {}
        losses.update({"l1": torch.nn.functional.l1_loss(y_pred, x), "msspec": msspec(y_pred, x)})
        qres.penalty.backward(retain_graph=True)
        row["g_loss"] = float(bal.backward(losses, y_pred))
        opt.step()
        opt.zero_grad()
        ema.step()
        row.update({k: float(v) for k, v in losses.items()})
        row.update({k: float(v) for k, v in bal.metrics.items()})
        row["penalty"] = float(qres.penalty)
        for k, p in enumerate(perplexity_np(qres.codes.numpy(), bins)):
            row[f"perplexity_q{k}"] = p
        for k, d in enumerate(dead):
            row[f"dead_q{k}"] = d
        acc.append(row)
        step = i + 1
        if step % eval_every == 0 or step == len(batches):
            curve.append({"step": step, **{f"train_{k}": v for k, v in _mean_rows(acc).items()}, **evaluate(),
                          "elapsed_s": time.perf_counter() - t0})
            acc = []
            log(curve[-1])
    return curve


# ----------------------------------------------------------------------------- ours
def run_ours(cfg, batches, evalsets, eval_every, log, disc_params=None):
    import jax
    import numpy as np

    from magnet_jax import sharding
    from magnet_jax.codec_training.loop import build
    from magnet_jax.codec_training.step import gan_enabled, make_eval_step, make_train_step, wav_sharding
    mesh = sharding.make_mesh(data=1, devices=jax.devices()[:1])
    graphdef, disc_graphdef, tx_g, tx_d, state = build(cfg, mesh)
    if disc_params is not None and gan_enabled(cfg):
        from magnet_jax.codec_training.state import replicated
        dp = jax.tree.map(lambda a: np.array(a), disc_params)
        assert jax.tree.structure(dp) == jax.tree.structure(jax.device_get(state.disc_params))
        do = jax.tree.map(lambda a: np.array(a), tx_d.init(dp))
        state = state.replace(disc_params=jax.device_put(dp, replicated(dp, mesh)),
                              disc_opt=jax.device_put(do, replicated(do, mesh)))
    step_fn = make_train_step(graphdef, disc_graphdef, cfg, tx_g, tx_d, mesh, state)
    eval_fn = make_eval_step(graphdef, cfg, mesh, state.ema)
    wsh = wav_sharding(mesh)
    seed_key = jax.random.PRNGKey(int(cfg.seed))
    thr = float(cfg.rvq.threshold_ema_dead_code)

    def evaluate(st):
        out = {}
        combos = {"ema": (st.ema["params"], st.ema["codebook"]), "raw": (st.params, st.codebook),
                  "emaw_rawcb": (st.ema["params"], st.codebook)}
        for tag, (p, cb) in combos.items():
            for name, bs in evalsets.items():
                rows = [jax.device_get(eval_fn(p, cb, jax.device_put(b, wsh), jax.random.PRNGKey(0))) for b in bs]
                out.update({f"{tag}_{name}_{k}": float(v) for k, v in _mean_rows(rows).items()
                            if k != "perplexity" and k != "mrstft"})
        return out

    with sharding.use_mesh(mesh):
        curve, acc = [], []
        t0 = time.perf_counter()
        curve.append({"step": 0, **evaluate(state)})
        for i, wav in enumerate(batches):
            cb = jax.device_get(state.codebook["quantizer"])
            dead = [(float(np.sum(cb["cluster_size"][k] < thr)) if cb["inited"][k] > 0 else 0.0)
                    for k in range(cb["cluster_size"].shape[0])]
            state, metrics = step_fn(state, jax.device_put(wav, wsh), seed_key)
            m = {k: float(v) for k, v in jax.device_get(metrics).items()}
            row = {k: v for k, v in m.items() if k in ("g_loss", "penalty", "l1", "msspec", "adv_msstftd",
                                                      "feat_msstftd", "d_loss", "grad_norm", "skipped")
                   or k.startswith("ratio_") or k.startswith("perplexity_q")}
            for k, d in enumerate(dead):
                row[f"dead_q{k}"] = d
            acc.append(row)
            step = i + 1
            if step % eval_every == 0 or step == len(batches):
                curve.append({"step": step, **{f"train_{k}": v for k, v in _mean_rows(acc).items()},
                              **evaluate(state), "elapsed_s": time.perf_counter() - t0})
                acc = []
                log(curve[-1])
    return curve, (graphdef, state)


def main(_):
    import jax
    import torch

    torch.set_num_threads(FLAGS.threads)
    runs = [parse_run(s) for s in FLAGS.runs]
    common = {"seed": FLAGS.seed, "losses.adv": FLAGS.adv, "losses.feat": FLAGS.feat,
              "eval_batches": FLAGS.eval_batches}
    base = load_config(FLAGS.config, common)
    t0 = time.perf_counter()
    batches, evalsets, train_files, eval_files = make_data(base, FLAGS.steps, FLAGS.wide_crops)
    print(f"data: {len(train_files)} train files, {len(eval_files)} eval files, {len(batches)} batches, eval sets "
          f"{ {k: len(v) for k, v in evalsets.items()} } ({time.perf_counter() - t0:.0f}s)", flush=True)
    metric_fn = make_metric_fn(base)

    import tests.reference.shim  # noqa: F401
    from tests.reference.torchaudio_py import load
    load()
    ref_disc = torch_disc(base, FLAGS.seed + 1)
    disc_params = disc_params_from_torch(base, ref_disc)

    def log_fn(name):
        def log(row):
            print(f"[{name}] step {row['step']:4d}  eval_mel ema {row['ema_trainer_mel']:.3f} raw "
                  f"{row['raw_trainer_mel']:.3f} | wide ema {row['ema_wide_mel']:.3f} raw {row['raw_wide_mel']:.3f}"
                  f" | train msspec {row.get('train_msspec', float('nan')):.3f} "
                  f"ppl {[round(row.get(f'train_perplexity_q{k}', 0), 1) for k in range(4)]} "
                  f"dead {[round(row.get(f'train_dead_q{k}', 0), 1) for k in range(4)]} "
                  f"({row.get('elapsed_s', 0):.0f}s)", flush=True)
        return log

    results = {}
    if FLAGS.merge and os.path.exists(FLAGS.merge):
        results.update(json.load(open(FLAGS.merge))["runs"])
    init = None
    for name, over in runs:
        t = time.perf_counter()
        cfg = load_config(FLAGS.config, {**common, **(over if name != "audiocraft" else {})})
        if name == "audiocraft":
            if init is None:   # the generator init of our build (same seed -> same weights)
                from magnet_jax import sharding
                from magnet_jax.codec_training.loop import build
                mesh = sharding.make_mesh(data=1, devices=jax.devices()[:1])
                g, _, _, _, st = build(cfg, mesh)
                init = (g, jax.device_get(st.params), jax.device_get(st.codebook))
            model, eval_model = torch_generator(cfg, *init), torch_generator(cfg, *init)
            curve = run_audiocraft(cfg, model, eval_model, torch_disc(base, FLAGS.seed + 1), batches, evalsets,
                                   metric_fn, FLAGS.eval_every, log_fn(name))
        else:
            curve, (g, st) = run_ours(cfg, batches, evalsets, FLAGS.eval_every, log_fn(name), disc_params)
        results[name] = {"overrides": over, "seconds": time.perf_counter() - t, "curve": curve}
        print(f"[{name}] done in {time.perf_counter() - t:.0f}s", flush=True)
        payload = dict(benchmark="codec_learning_curves", config=FLAGS.config, steps=FLAGS.steps,
                       eval_every=FLAGS.eval_every, seed=FLAGS.seed, common_overrides=common,
                       data=dict(audio_dir=FLAGS.audio_dir, eval_audio_dir=FLAGS.eval_audio_dir,
                                 train_files=[os.path.basename(p) for p in train_files],
                                 eval_files=[os.path.basename(p) for p in eval_files],
                                 eval_sets={k: len(v) * int(base.batch_size) for k, v in evalsets.items()},
                                 crop_seconds=float(base.segment_seconds), batch_size=int(base.batch_size)),
                       machine=machine(), loadavg=os.getloadavg(), runs=results)
        write_json("codec_learning_curves", payload, FLAGS.json)


if __name__ == "__main__":
    app.run(main)
