"""One jitted, data-parallel codec training step (audiocraft ``CompressionSolver.run_step``) and
the held-out evaluation step.

Order as in audiocraft: generator forward (``y_pred``, codebook EMA update) -> discriminator
update on detached ``y_pred`` / ``y`` (with probability ``1 / adversarial.every``) -> generator
losses against the *updated* discriminator -> their gradients w.r.t. ``y_pred`` combined by the
:mod:`balancer` -> pulled back through the generator together with the commitment penalty (weight
1, outside the balancer) -> Adam -> non-finite guard (skip the update, count it) -> generator EMA
(decay 0.99 every step, unbiased). The per-step key is ``fold_in(seed_key, step)``, so a resumed
run draws the same randomness as an uninterrupted one. The state is donated.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from magnet_jax.codec.training_model import codec_train_forward
from magnet_jax.codec_training import adversarial, balancer, losses
from magnet_jax.codec_training.state import CodecTrainState, ema_update, replicated
from magnet_jax.sharding import logical_to_spec

ADV_NAME = "msstftd"


def wav_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(("batch", None, None)))


def loss_weights(cfg) -> dict:
    """Balanced losses and their weights: ``adv_msstftd`` / ``feat_msstftd`` when the adversarial
    weights are > 0 (else GAN-free), plus ``l1`` / ``msspec`` (audiocraft's naming) and ``mrstft``
    (multi-resolution linear STFT, not in audiocraft) when > 0."""
    w = {}
    if gan_enabled(cfg):
        w[f"adv_{ADV_NAME}"] = float(cfg.losses.adv)
        w[f"feat_{ADV_NAME}"] = float(cfg.losses.feat)
    for name in ("l1", "msspec", "mrstft"):
        if float(cfg.losses.get(name, 0.0)) > 0:
            w[name] = float(cfg.losses[name])
    if not w:
        raise ValueError("every loss weight is 0: set --config.losses.msspec / l1 / adv / feat")
    return w


def gan_enabled(cfg) -> bool:
    return float(cfg.losses.adv) > 0 or float(cfg.losses.feat) > 0


def msspec_kwargs(cfg) -> dict:
    m = cfg.msspec
    return dict(sample_rate=int(cfg.model.sample_rate), range_start=int(m.range_start), range_end=int(m.range_end),
                n_mels=int(m.n_mels), f_min=float(m.f_min), f_max=(float(m.f_max) or None),
                normalized=bool(m.normalized), alphas=bool(m.alphas), floor_level=float(m.floor_level))


def mrstft_ffts(cfg) -> tuple:
    return tuple(int(n) for n in cfg.mrstft.n_ffts)


def mel_kwargs(cfg) -> dict:
    m = cfg.mel
    return dict(sample_rate=int(cfg.model.sample_rate), n_fft=int(m.n_fft), hop_length=int(m.hop_length),
                n_mels=int(m.n_mels), f_min=float(m.f_min), f_max=(float(m.f_max) or None),
                normalized=bool(m.normalized), floor_level=float(m.floor_level))


def decoder_only(cfg) -> bool:
    """``train_only="decoder"``: the encoder and the codebooks stay as loaded, so every clip keeps its codes."""
    mode = str(cfg.get("train_only", "") or "")
    if mode not in ("", "decoder"):
        raise ValueError(f"train_only={mode!r}: use '' (everything) or 'decoder'")
    return mode == "decoder"


def phase_from_input(cfg) -> bool:
    mode = str(cfg.get("train_phase", "input") or "input")
    if mode not in ("input", "griffin_lim"):
        raise ValueError(f"train_phase={mode!r}: use 'input' or 'griffin_lim'")
    return mode == "input"


def _forward(graphdef, params, codebook, wav, key, train, dropout, frozen=False, from_input=True):
    recon, aux = codec_train_forward(graphdef, params, nnx.State(codebook), wav, key, train=train,
                                     quantizer_dropout=dropout, decoder_only=frozen, phase_from_input=from_input)
    aux = dict(aux)
    aux["codebook_state"] = nnx.to_pure_dict(aux["codebook_state"])
    return recon, aux


def make_train_step(graphdef, disc_graphdef, cfg, tx_g, tx_d, mesh, state_example: CodecTrainState):
    """``step(state, wav [B, C, N], seed_key) -> (state, metrics)``, jitted over ``mesh``."""
    weights = loss_weights(cfg)
    gan = gan_enabled(cfg)
    ms_kw = msspec_kwargs(cfg)
    mr_ffts = mrstft_ffts(cfg)
    bal = cfg.balancer
    every = max(int(cfg.adversarial.every), 1)
    dropout = bool(cfg.rvq.q_dropout)
    ema_decay = float(cfg.ema_decay)
    frozen, from_input = decoder_only(cfg), phase_from_input(cfg)

    def step(state: CodecTrainState, wav, seed_key):
        key = jax.random.fold_in(seed_key, state.step)
        k_fwd, k_adv = jax.random.split(key)

        def fwd(p):
            recon, aux = _forward(graphdef, p, state.codebook, wav, k_fwd, True, dropout, frozen, from_input)
            return (recon, aux["commit_loss"]), aux
        (recon, commit), pullback, aux = jax.vjp(fwd, state.params, has_aux=True)

        metrics = {}
        disc_params, disc_opt = state.disc_params, state.disc_opt
        if gan:
            def d_loss_fn(dp):
                return adversarial.discriminator_loss(nnx.merge(disc_graphdef, dp), recon, wav)
            d_loss, d_grads = jax.value_and_grad(d_loss_fn)(state.disc_params)
            upd, new_d_opt = tx_d.update(d_grads, state.disc_opt, state.disc_params)
            new_dp = optax.apply_updates(state.disc_params, upd)
            do_d = jax.random.uniform(k_adv) <= 1.0 / every
            do_d = do_d & jnp.isfinite(d_loss) & jnp.isfinite(optax.global_norm(d_grads))
            disc_params = jax.tree.map(lambda a, b: jnp.where(do_d, a, b), new_dp, state.disc_params)
            disc_opt = jax.tree.map(lambda a, b: jnp.where(do_d, a, b), new_d_opt, state.disc_opt)
            metrics["d_loss"] = d_loss
            metrics[f"d_{ADV_NAME}"] = d_loss

        def gen_losses(y):
            out = {}
            if gan:
                adv, feat = adversarial.generator_losses(nnx.merge(disc_graphdef, disc_params), y, wav)
                out[f"adv_{ADV_NAME}"], out[f"feat_{ADV_NAME}"] = adv, feat
            if "l1" in weights:
                out["l1"] = losses.l1_loss(y, wav)
            if "msspec" in weights:
                out["msspec"] = losses.msspec_loss(y, wav, **ms_kw)
            if "mrstft" in weights:
                out["mrstft"] = losses.mrstft_loss(y, wav, n_ffts=mr_ffts)
            return out
        vals, grads = balancer.partial_grads(gen_losses, recon)
        out_grad, g_loss, bal_state, ratios = balancer.balance(
            vals, grads, state.balancer, weights, balance_grads=bool(bal.balance_grads),
            total_norm=float(bal.total_norm), ema_decay=float(bal.ema_decay), per_batch_item=bool(bal.per_batch_item))
        p_grads, = pullback((out_grad, jnp.ones_like(commit)))
        grad_norm = optax.global_norm(p_grads)
        upd, new_opt = tx_g.update(p_grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, upd)
        if frozen:   # everything but the decoder stays bit-identical (params, codebooks and their EMA)
            new_params = {**state.params, "decoder": new_params["decoder"]}
        finite = jnp.isfinite(g_loss) & jnp.isfinite(grad_norm) & jnp.isfinite(commit)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        params, opt_state = keep(new_params, state.params), keep(new_opt, state.opt_state)
        codebook = keep(aux["codebook_state"], state.codebook)
        bal_state = keep(bal_state, state.balancer)
        new_ema, count = ema_update(state.ema, state.ema_count, {"params": params, "codebook": codebook}, ema_decay)
        if frozen:
            new_ema = {"params": {**params, "decoder": new_ema["params"]["decoder"]}, "codebook": codebook}
        ema = keep(new_ema, state.ema)
        count = jnp.where(finite, count, state.ema_count)
        new_state = CodecTrainState(step=state.step + 1, params=params, codebook=codebook, opt_state=opt_state,
                                    disc_params=disc_params, disc_opt=disc_opt, ema=ema, ema_count=count,
                                    balancer=bal_state, skipped=state.skipped + (~finite).astype(jnp.int32))
        ppl = aux["perplexity"]
        metrics.update({k: v for k, v in vals.items()})
        metrics.update(ratios)
        if gan:
            metrics["adv"], metrics["feat"] = vals[f"adv_{ADV_NAME}"], vals[f"feat_{ADV_NAME}"]
        metrics.update({"g_loss": g_loss, "penalty": commit, "grad_norm": grad_norm, "finite": finite,
                        "skipped": new_state.skipped, "n_q": aux["n_q"].astype(jnp.float32),
                        "perplexity": jnp.sum(ppl) / jnp.maximum(aux["n_q"].astype(jnp.float32), 1.0)})
        for k in range(ppl.shape[0]):
            metrics[f"perplexity_q{k}"] = ppl[k]
        return new_state, metrics

    st_sh = replicated(state_example, mesh)
    rep = NamedSharding(mesh, P())
    return jax.jit(step, in_shardings=(st_sh, wav_sharding(mesh), rep), out_shardings=(st_sh, rep),
                   donate_argnums=(0,))


def make_eval_step(graphdef, cfg, mesh, params_example):
    """``eval(params, codebook, wav, key) -> metrics`` on a held-out batch (no codebook update, all
    codebooks): SI-SNR (dB), mel distance (audiocraft ``mel``), msspec, mrstft, L1, codebook perplexity."""
    ms_kw, mel_kw, mr_ffts = msspec_kwargs(cfg), mel_kwargs(cfg), mrstft_ffts(cfg)
    sr = int(cfg.model.sample_rate)
    seg = float(cfg.sisnr.segment) or None

    def ev(params, codebook, wav, key):
        recon, aux = _forward(graphdef, params, codebook, wav, key, False, False)
        ppl = aux["perplexity"]
        out = {"sisnr": losses.sisnr(recon, wav, sample_rate=sr, segment=seg),
               "mel": losses.mel_loss(recon, wav, **mel_kw), "msspec": losses.msspec_loss(recon, wav, **ms_kw),
               "l1": losses.l1_loss(recon, wav), "perplexity": jnp.mean(ppl),
               "mrstft": losses.mrstft_loss(recon, wav, n_ffts=mr_ffts)}
        for k in range(ppl.shape[0]):
            out[f"perplexity_q{k}"] = ppl[k]
        return out
    rep = NamedSharding(mesh, P())
    return jax.jit(ev, in_shardings=(replicated(params_example["params"], mesh),
                                     replicated(params_example["codebook"], mesh), wav_sharding(mesh), rep),
                   out_shardings=rep)
