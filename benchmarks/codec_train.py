"""Codec training throughput: our jitted step vs audiocraft's CompressionSolver step, same shapes.

  python -m benchmarks.codec_train                       # small shapes (CPU): 16 kHz, 8 filters, batch 4, 1 s
  python -m benchmarks.codec_train --n_filters 64 --dimension 128 --batch 8 --disc_filters 32   # audiogen shapes

Reference: audiocraft's ``EncodecModel`` (``builders.get_compression_model``), its
``MultiScaleSTFTDiscriminator`` in an ``AdversarialLoss`` (hinge, L1 feature matching, own Adam),
``MultiScaleMelSpectrogramLoss`` + L1, the ``Balancer`` and Adam (0.5, 0.9), run as
``CompressionSolver.run_step`` does (forward, discriminator update, balanced backward of the
generator, commitment penalty, optimizer step) plus the generator EMA. Ours: the same recipe as one
jitted program (magnet_jax.codec_training.step). Reported: seconds of audio trained per wall-clock
second (best of ``--reps`` steps after ``--warmup``) and the ratio ours / reference.
Writes benchmarks/results/codec_train.json.
"""
from __future__ import annotations

import os
import time

from absl import app, flags

from benchmarks.common import machine, timeit, write_json

flags.DEFINE_integer("sample_rate", 16000, "sample rate")
flags.DEFINE_integer("n_filters", 8, "SEANet filters")
flags.DEFINE_integer("dimension", 32, "latent dimension")
flags.DEFINE_integer("lstm", 1, "LSTM layers")
flags.DEFINE_integer("n_q", 4, "codebooks")
flags.DEFINE_integer("bins", 256, "codes per codebook")
flags.DEFINE_integer("disc_filters", 8, "MS-STFT discriminator filters")
flags.DEFINE_integer("batch", 4, "batch size")
flags.DEFINE_float("seconds", 1.0, "crop length")
flags.DEFINE_integer("reps", 3, "timed steps (best is reported)")
flags.DEFINE_integer("warmup", 2, "untimed steps (ours: includes the compilation)")
flags.DEFINE_integer("threads", 0, "torch intra-op threads (0 = number of cores)")
flags.DEFINE_string("out", None, "JSON output path")
FLAGS = flags.FLAGS


def _config():
    import importlib.util

    from benchmarks.common import ROOT
    spec = importlib.util.spec_from_file_location("codec_configs", ROOT / "configs" / "codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("encodec_audiogen_16khz")
    c.model.update(dict(sample_rate=FLAGS.sample_rate, n_filters=FLAGS.n_filters, dimension=FLAGS.dimension,
                        lstm=FLAGS.lstm, n_q=FLAGS.n_q, bins=FLAGS.bins))
    c.msstftd.filters = FLAGS.disc_filters
    c.batch_size = FLAGS.batch
    c.mesh.data = 1
    return c


def reference_step_fn(cfg, wav):
    """A closure running one audiocraft CompressionSolver training step (and the EMA update)."""
    import torch

    import tests.reference.shim  # noqa: F401
    from tests.reference.torchaudio_py import load
    load()
    from audiocraft import adversarial as A
    from audiocraft import losses as L
    from audiocraft.models import builders
    from audiocraft.optim.ema import ModuleDictEMA
    from omegaconf import OmegaConf

    from tests.reference import encodec_ref as R
    m = cfg.model
    xcfg = R.native_cfg(sample_rate=m.sample_rate, ratios=tuple(m.ratios), n_filters=m.n_filters,
                        dimension=m.dimension, lstm=m.lstm, n_q=m.n_q, bins=m.bins)
    model = builders.get_compression_model(OmegaConf.create(xcfg)).train()
    d = cfg.msstftd
    disc = A.MultiScaleSTFTDiscriminator(filters=d.filters, in_channels=1, out_channels=1, norm="weight_norm",
                                         n_ffts=list(d.n_ffts), hop_lengths=list(d.hop_lengths),
                                         win_lengths=list(d.win_lengths), activation="LeakyReLU",
                                         activation_params={"negative_slope": d.negative_slope})
    adam = dict(lr=cfg.optim.lr, betas=(cfg.optim.b1, cfg.optim.b2))
    adv = A.AdversarialLoss(disc, torch.optim.Adam(disc.parameters(), **adam), loss=A.losses.hinge_loss,
                            loss_real=A.losses.hinge_real_loss, loss_fake=A.losses.hinge_fake_loss,
                            loss_feat=A.FeatureMatchingLoss(torch.nn.L1Loss(), True), normalize=True)
    ms = cfg.msspec
    msspec = L.MultiScaleMelSpectrogramLoss(m.sample_rate, range_start=ms.range_start, range_end=ms.range_end,
                                            n_mels=ms.n_mels, f_min=ms.f_min, f_max=None, normalized=ms.normalized,
                                            alphas=ms.alphas, floor_level=ms.floor_level)
    bal = L.Balancer({"adv_msstftd": cfg.losses.adv, "feat_msstftd": cfg.losses.feat, "l1": cfg.losses.l1,
                      "msspec": cfg.losses.msspec}, balance_grads=True, total_norm=1.0, ema_decay=0.999,
                     per_batch_item=True)
    opt = torch.optim.Adam(model.parameters(), **adam)
    ema = ModuleDictEMA(torch.nn.ModuleDict({"model": model}), decay=cfg.ema_decay)
    x = torch.from_numpy(wav)

    def step():
        qres = model(x)
        y_pred = qres.x
        adv.train_adv(y_pred, x)
        a, f = adv(y_pred, x)
        losses = {"adv_msstftd": a, "feat_msstftd": f, "l1": torch.nn.functional.l1_loss(y_pred, x),
                  "msspec": msspec(y_pred, x)}
        qres.penalty.backward(retain_graph=True)
        bal.backward(losses, y_pred)
        opt.step()
        opt.zero_grad()
        ema.step()
    return step


def main(_):

    import jax
    import torch

    from magnet_jax import sharding
    from magnet_jax.codec_training.loop import build
    from magnet_jax.codec_training.step import make_train_step, wav_sharding
    from tests.reference.encodec_ref import test_signal

    torch.set_num_threads(FLAGS.threads or os.cpu_count())
    cfg = _config()
    sr, n = FLAGS.sample_rate, int(FLAGS.seconds * FLAGS.sample_rate)
    wav = test_signal("mix", FLAGS.batch, 1, n, sr, seed=0)
    audio_s = FLAGS.batch * FLAGS.seconds

    mesh = sharding.make_mesh(data=1, devices=jax.devices()[:1])
    graphdef, disc_graphdef, tx_g, tx_d, state = build(cfg, mesh)
    step_fn = make_train_step(graphdef, disc_graphdef, cfg, tx_g, tx_d, mesh, state)
    x = jax.device_put(wav, wav_sharding(mesh))
    key = jax.random.PRNGKey(0)
    holder = {"state": state}

    def ours():
        holder["state"], metrics = step_fn(holder["state"], x, key)
        jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    ours()
    compile_s = time.perf_counter() - t0
    t_ours = timeit(ours, reps=FLAGS.reps, warmup=max(FLAGS.warmup - 1, 0))
    ref = reference_step_fn(cfg, wav)
    t_ref = timeit(ref, reps=FLAGS.reps, warmup=FLAGS.warmup)
    row = dict(ours_audio_s_per_s=audio_s / t_ours, ref_audio_s_per_s=audio_s / t_ref, ours_step_s=t_ours,
               ref_step_s=t_ref, ours_first_step_s=compile_s, ratio=t_ref / t_ours)
    print(f"codec train step, batch {FLAGS.batch} x {FLAGS.seconds:g}s @ {sr} Hz: magnet_jax "
          f"{row['ours_audio_s_per_s']:.2f} audio-s/s, audiocraft {row['ref_audio_s_per_s']:.2f} audio-s/s "
          f"-> ratio {row['ratio']:.2f}x (first step incl. compile {compile_s:.1f}s)", flush=True)
    shape = dict(sample_rate=sr, n_filters=FLAGS.n_filters, dimension=FLAGS.dimension, lstm=FLAGS.lstm,
                 n_q=FLAGS.n_q, bins=FLAGS.bins, disc_filters=FLAGS.disc_filters, batch=FLAGS.batch,
                 seconds=FLAGS.seconds, ratios=list(cfg.model.ratios), msstftd_n_ffts=list(cfg.msstftd.n_ffts))
    write_json("codec_train", dict(benchmark="codec_train", shape=shape, reps=FLAGS.reps, machine=machine(),
                                   loadavg=os.getloadavg(), result=row), FLAGS.out)



if __name__ == "__main__":
    app.run(main)
