"""MusicGen in the trainer (``config.objective=musicgen``, configs/musicgen.py): the jitted train step lowers the
loss of a tiny MusicGen on a memorisable toy token set, evaluation reports the per-codebook CE (their mean is
the objective), CFG dropout nulls the text, and the EMA export loads back as a MusicGenLM."""
import importlib.util
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from magnet_jax import sharding
from magnet_jax.convert import load_lm_safetensors, save_lm_safetensors
from magnet_jax.convert.t5 import load_text_stack
from magnet_jax.model import MusicGenConfig, MusicGenLM
from magnet_jax.objectives.musicgen import musicgen_loss
from magnet_jax.sharding import batch_shardings
from magnet_jax.training import TrainConfig
from magnet_jax.training import state as S
from magnet_jax.training.loop import lm_class
from magnet_jax.training.optim import make_optimizer, make_schedule
from magnet_jax.training.step import make_eval_step, make_train_step

KEYS = ("codes", "padding_mask", "text_ids", "text_mask")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "musicgen.py"


def _musicgen_config(name="tiny"):
    spec = importlib.util.spec_from_file_location("musicgen_configs", CONFIGS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(name)


def _cfg(**kw) -> TrainConfig:
    c = _musicgen_config()
    c.model.segment_duration = 0.4                     # 20 frames
    c.model.card = 64
    c.update({"batch_size": 4, "warmup_steps": 2, "learning_rate": 3e-3, "cfg_dropout": 0.0, **kw})
    return TrainConfig.from_config(c)


def _toy_batch(c: TrainConfig):
    """Four fixed, periodic token sequences (memorisable), one of them padded after 15 frames."""
    mcfg, B, T = c.model, c.data.batch_size, c.model.segment_frames
    t = np.arange(T)
    codes = np.stack([np.stack([(3 * b + k + (t % (2 + b))) % mcfg.card for k in range(mcfg.n_q)])
                      for b in range(B)]).astype(np.int32)
    padding = np.ones((B, T), bool)
    padding[3, 15:] = False
    codes[3, :, 15:] = mcfg.mask_id                  # padded frames hold the pad id, as the data pipeline's
    S_txt = c.text.max_length
    ids = np.tile(np.arange(S_txt, dtype=np.int32)[None] + 3, (B, 1))
    tm = (np.arange(S_txt)[None] < np.array([[5], [3], [8], [2]])).astype(np.int32)
    return {"codes": codes, "padding_mask": padding, "text_ids": ids, "text_mask": tm}


def _setup(c: TrainConfig, mesh):
    mcfg = c.model
    _, t5 = load_text_stack("tiny", mcfg.text_dim)
    t5g, t5s = nnx.split(t5.module)
    graphdef, params, pspecs = S.split_model(lm_class(mcfg)(mcfg, rngs=nnx.Rngs(0)))
    tx = make_optimizer(c.optim)
    specs = S.state_specs(tx, params, pspecs)
    state = S.init_state(tx, params, specs, mesh)
    step = make_train_step(graphdef, t5g, c.step, tx, make_schedule(c.optim), mcfg, specs, mesh, KEYS)
    ev = make_eval_step(graphdef, t5g, mcfg, pspecs, mesh, KEYS, c.step)
    t5p = jax.device_put(nnx.to_pure_dict(t5s), jax.sharding.NamedSharding(mesh, P()))
    return graphdef, state, step, ev, t5p, t5


def test_config_selects_the_musicgen_objective():
    c = _cfg()
    assert isinstance(c.model, MusicGenConfig) and c.step.objective == "musicgen"
    assert c.model.delays == (0, 1, 2, 3) and lm_class(c.model) is MusicGenLM
    small = TrainConfig.from_config(_musicgen_config("musicgen_small"))
    assert (small.model.dim, small.model.num_layers, small.model.segment_duration) == (1024, 24, 30.0)


def test_train_step_memorises_toy_tokens_and_eval_is_per_codebook(tmp_path):
    c = _cfg(total_steps=30)
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    graphdef, state, step, ev, t5p, t5 = _setup(c, mesh)
    batch = jax.device_put(_toy_batch(c), batch_shardings(KEYS, mesh))
    with sharding.use_mesh(mesh):
        per_k0 = np.asarray(ev(state.params, batch, t5p, jax.random.PRNGKey(0)))
        losses = []
        for _ in range(30):
            state, m = step(state, batch, t5p, jax.random.PRNGKey(1))
            losses.append(float(m["loss"]))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses
    # the step's loss is the objective's (first step: the initial params)
    lm0 = nnx.merge(graphdef, S.split_model(MusicGenLM(c.model, rngs=nnx.Rngs(0)))[1])
    hidden = t5(batch["text_ids"], batch["text_mask"])
    want, aux = musicgen_loss(lm0, batch["codes"], hidden, batch["text_mask"], padding_mask=batch["padding_mask"])
    np.testing.assert_allclose(losses[0], float(want), rtol=1e-4)
    np.testing.assert_allclose(per_k0, np.asarray(aux["ce_per_codebook"]), rtol=1e-4)    # eval: per codebook
    # the EMA export loads back as a MusicGenLM
    save_lm_safetensors(nnx.merge(graphdef, jax.device_get(state.params)), tmp_path / "export")
    back = load_lm_safetensors(tmp_path / "export")
    assert isinstance(back, MusicGenLM) and back.config == c.model


def test_cfg_dropout_nulls_the_text():
    c = _cfg()
    mcfg = c.model
    lm = MusicGenLM(mcfg, rngs=nnx.Rngs(1))
    b = _toy_batch(c)
    _, t5 = load_text_stack("tiny", mcfg.text_dim)
    hidden = t5(b["text_ids"], b["text_mask"])
    dropped, _ = musicgen_loss(lm, b["codes"], hidden, b["text_mask"], padding_mask=b["padding_mask"],
                               rng=jax.random.PRNGKey(0), cfg_dropout=1.0)
    null, _ = musicgen_loss(lm, b["codes"], 0 * hidden, 0 * b["text_mask"], padding_mask=b["padding_mask"])
    cond, _ = musicgen_loss(lm, b["codes"], hidden, b["text_mask"], padding_mask=b["padding_mask"])
    np.testing.assert_allclose(float(dropped), float(null), rtol=1e-6)
    assert abs(float(cond) - float(null)) > 1e-4
