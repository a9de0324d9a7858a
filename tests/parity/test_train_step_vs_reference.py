"""The trainer's MAGNeT step vs audiocraft 1.3.0's MagnetSolver step (benchmarks/lm_learning_curves.py in small).

Same initial weights (the trainer's seeded init exported with ``to_audiocraft_state_dict``), same batches, and the
stage / span masks / CFG dropout the trainer's step draws inside jit (drawn again on the host with the same key)
fed to the body of audiocraft's ``MagnetSolver.run_step`` (masked CE, backward, ``clip_grad_norm_``, AdamW and
``CosineLRScheduler`` from audiocraft's solver builders): losses, gradient norms and the held-out loss per stage
after a few steps agree to float32 noise.
"""
import jax
import numpy as np
import torch
from flax import nnx

from magnet_jax import sharding
from magnet_jax.configs import get_config
from magnet_jax.convert import to_audiocraft_state_dict
from magnet_jax.training import TrainConfig
from magnet_jax.training import state as S
from magnet_jax.training.loop import initial_model
from magnet_jax.training.optim import finite_update_bound, make_optimizer, make_schedule
from magnet_jax.training.step import _prepare, make_eval_step, make_train_step
from tests.reference import magnet_ref as R

KEYS = ("codes", "padding_mask", "text_hidden", "text_mask")
STEPS = 6


def _cfg() -> TrainConfig:
    c = get_config("tiny")
    c.model.segment_duration = 1.0                       # 50 frames (audiocraft's stage masks need whole seconds)
    c.update({"batch_size": 4, "warmup_steps": 2, "learning_rate": 3e-3, "total_steps": STEPS, "cfg_dropout": 0.3})
    return TrainConfig.from_config(c)


def _batches(c: TrainConfig, n: int, seed: int) -> list[dict]:
    m, B = c.model, c.data.batch_size
    T, St = m.segment_frames, 6
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        codes = rng.integers(0, m.card, (B, m.n_q, T)).astype(np.int32)
        codes[:, :, 1::2] = codes[:, :, ::2]                              # something to learn
        pad = np.arange(T)[None] < np.array([T, T, T - 7, T - 20])[:, None]
        codes = np.where(pad[:, None], codes, m.mask_id).astype(np.int32)  # padded frames hold the mask id
        tmask = (np.arange(St)[None] < np.array([6, 3, 4, 0])[:, None]).astype(np.int32)   # one empty text
        out.append({"codes": codes, "padding_mask": pad, "text_mask": tmask,
                    "text_hidden": rng.standard_normal((B, St, m.text_dim)).astype(np.float32)})
    return out


def _reference(c: TrainConfig, graphdef, params):
    m = c.model
    xp = R.magnet_xp_cfg(dim=m.dim, num_heads=m.num_heads, num_layers=m.num_layers, n_q=m.n_q, card=m.card,
                         subcodes_context=m.subcodes_context, segment_duration=int(m.segment_duration),
                         t5_name="t5-small", hidden_scale=m.hidden_scale)
    ref = R.build_reference(xp)
    ref.condition_provider.conditioners["description"].output_proj = torch.nn.Linear(m.text_dim, m.dim)
    sd = to_audiocraft_state_dict(nnx.merge(graphdef, params))
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=True)
    return ref.train()


def _reference_loss(ref, b, d, stage_: int, mask_id: int):
    """MagnetSolver.run_step's loss with the trainer's draw ``d``."""
    from audiocraft.solvers.magnet import MagnetSolver
    audio_tokens = torch.from_numpy(np.array(b["codes"], np.int64))
    B, K, T = audio_tokens.shape
    stage_mask = torch.from_numpy(np.array(d["inputs"][:, stage_] == mask_id)).unsqueeze(1)
    longest = max(int((b["text_mask"] > 0).sum(-1).max()), 1)          # audiocraft pads to the longest text
    ct = R.condition_tensors(ref, torch.from_numpy(np.array(b["text_hidden"][:, :longest])),
                             torch.from_numpy(np.array(d["text_mask"][:, :longest], np.int64)),
                             grad=torch.is_grad_enabled())
    stage = torch.full((1,), stage_)
    mask = torch.full((B, K, T), False)
    mask[:, stage, :] = stage_mask
    mask[:, (stage_ + 1):, :] = True
    input_tokens = torch.where(mask, mask_id, audio_tokens)
    np.testing.assert_array_equal(input_tokens.numpy(), d["inputs"])
    loss_mask = torch.full((B, K, T), False)
    loss_mask[:, stage, :] = stage_mask
    loss_mask &= torch.from_numpy(np.array(b["padding_mask"]))[:, None, :].expand(B, K, T)
    logits = ref.compute_predictions(input_tokens, [], ct, stage=stage_).logits
    return MagnetSolver._compute_cross_entropy_magnet(None, logits, audio_tokens, loss_mask, stage)


def test_trainer_steps_equal_audiocraft_solver_steps():
    from audiocraft.solvers import builders
    from omegaconf import OmegaConf
    torch.manual_seed(0)
    c = _cfg()
    m, o = c.model, c.optim
    mesh = sharding.make_mesh(data=1, devices=jax.devices()[:1])
    graphdef, params, pspecs = initial_model("", 0, m, mesh)
    params = jax.device_get(params)
    batches, held = _batches(c, STEPS, 0), _batches(c, 1, 1)

    # ours: the trainer's step and eval step
    tx = make_optimizer(o)
    specs = S.state_specs(tx, params, pspecs)
    state = S.init_state(tx, jax.tree.map(np.array, params), specs, mesh)
    step = make_train_step(graphdef, None, c.step, tx, make_schedule(o), m, specs, mesh, KEYS,
                           update_bound=finite_update_bound(o))
    ev = make_eval_step(graphdef, None, m, pspecs, mesh, KEYS, c.step)
    put = lambda b: jax.device_put(b, sharding.batch_shardings(KEYS, mesh))  # noqa: E731
    seed_key = jax.random.PRNGKey(1)           # CFG-drops steps 0-2 (a null text reaches both sides)
    ours, draws = [], []
    with sharding.use_mesh(mesh):
        for i, b in enumerate(batches):
            state, met = step(state, put(b), None, seed_key)
            d = {k: np.asarray(v) for k, v in _prepare(c.step, m, b, jax.random.fold_in(seed_key, i)).items()}
            assert int(met["stage"]) == int(d["stage"]) and float(met["num_tokens"]) == d["weights"].sum()
            ours.append((float(met["loss"]), float(met["grad_norm"])))
            draws.append(d)
        ours_held = np.asarray(ev(state.params, put(held[0]), None, jax.random.PRNGKey(1000)))
        initial_held = np.asarray(ev(params, put(held[0]), None, jax.random.PRNGKey(1000)))
    assert len({int(d["stage"]) for d in draws}) > 1 and any(d["text_mask"].sum() == 0 for d in draws)

    # audiocraft: MagnetSolver's step on the same draws
    ref = _reference(c, graphdef, params)
    ocfg = OmegaConf.create({"optimizer": "adamw", "lr": o.learning_rate,
                             "adam": {"betas": [o.b1, o.b2], "weight_decay": o.weight_decay, "eps": o.eps},
                             "lr_scheduler": "cosine",
                             "cosine": {"warmup": o.warmup_steps, "lr_min_ratio": o.lr_min_ratio, "cycle_length": 1.0}})
    opt = builders.get_optimizer(ref, ocfg)
    sched = builders.get_lr_scheduler(opt, ocfg, o.total_steps)
    theirs = []
    for b, d in zip(batches, draws):
        loss = _reference_loss(ref, b, d, int(d["stage"]), m.mask_id)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(ref.parameters(), o.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
        theirs.append((loss.item(), float(gn)))
    ref.eval()
    with torch.no_grad():
        key = jax.random.PRNGKey(1000)
        theirs_held = [float(_reference_loss(ref, held[0], {k: np.asarray(v) for k, v in _prepare(
            c.step, m, held[0], jax.random.fold_in(key, s), stage=s).items()}, s, m.mask_id)) for s in range(m.n_q)]

    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4)
    assert min(g for _, g in ours) > o.max_grad_norm          # the clip acts
    np.testing.assert_allclose(ours_held, theirs_held, rtol=1e-4)
    assert np.abs(ours_held - initial_held).max() > 1e-2      # the weights moved
