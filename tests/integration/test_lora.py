"""LoRA (magnet_jax/model/lora.py, training/lora.py): the adapted model is the base model at init, attached adapters
equal merged weights, a LoRA train step trains (and checkpoints) only the adapters, and an adapter saved alone is
applied at load time (``from_pretrained(base, adapter=...)``) as the merged export."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from magnet_jax import sharding
from magnet_jax.configs import get_config
from magnet_jax.convert.t5 import load_text_stack
from magnet_jax.model import MagnetLM
from magnet_jax.model import lora as L
from magnet_jax.model.config import MagnetConfig
from magnet_jax.sharding import batch_shardings
from magnet_jax.training import TrainConfig
from magnet_jax.training import lora as TL
from magnet_jax.training import state as S
from magnet_jax.training.checkpoint import Checkpointer
from magnet_jax.training.optim import finite_update_bound, make_optimizer, make_schedule
from magnet_jax.training.step import make_train_step

KEYS = ("codes", "padding_mask", "text_ids", "text_mask")


def _mcfg(**kw) -> MagnetConfig:
    return MagnetConfig.from_dict({**get_config("tiny").model.to_dict(), "segment_duration": 0.6, **kw})


def _inputs(mcfg, B=2, S_txt=5):
    k = jax.random.split(jax.random.PRNGKey(3), 2)
    codes = jax.random.randint(k[0], (B, mcfg.n_q, mcfg.segment_frames), 0, mcfg.card)
    return codes, jax.random.normal(k[1], (B, S_txt, mcfg.text_dim)), jnp.ones((B, S_txt), jnp.int32)


def _random_adapters(params, lc, seed=1):
    """Adapters with non-zero ``b`` (a trained adapter), so that they change the logits."""
    ad = L.init_adapters(params, lc, jax.random.PRNGKey(seed))
    leaves, tree = jax.tree.flatten(ad)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _logits_fns(mcfg, lc):
    """``(params, base(p, stage), attached(p, adapters, stage), merged(p, adapters, stage))``: jitted logits."""
    lm = MagnetLM(mcfg, rngs=nnx.Rngs(0))
    graphdef, params, _ = S.split_model(lm)
    x = _inputs(mcfg)
    jit = lambda f: jax.jit(f, static_argnames="stage")  # noqa: E731
    base = jit(lambda p, stage=1: nnx.merge(graphdef, p)(*x, stage=stage))
    attached = jit(lambda p, ad, stage=1: L.attach(nnx.merge(graphdef, p), ad, lc)(*x, stage=stage))
    merged = jit(lambda p, ad, stage=1: nnx.merge(graphdef, L.merge(p, ad, lc))(*x, stage=stage))
    return params, base, attached, merged


@pytest.mark.parametrize("scan_layers", [True, False])
def test_fresh_adapters_give_the_base_logits_exactly(scan_layers):
    mcfg, lc = _mcfg(scan_layers=scan_layers), L.LoRAConfig(rank=4)
    params, base, attached, _ = _logits_fns(mcfg, lc)
    ad = L.init_adapters(params, lc, jax.random.PRNGKey(1))
    assert float(jnp.abs(ad["ffn"]["w1"]["a"]).max()) > 0 and float(jnp.abs(ad["ffn"]["w1"]["b"]).max()) == 0
    for stage in (0, 1):
        np.testing.assert_array_equal(np.asarray(attached(params, ad, stage=stage)),
                                      np.asarray(base(params, stage=stage)))


@pytest.mark.parametrize("scan_layers", [True, False])
def test_merged_weights_equal_the_attached_adapters(scan_layers):
    mcfg, lc = _mcfg(scan_layers=scan_layers), L.LoRAConfig(rank=4, alpha=8.0)
    params, base, attached, merged = _logits_fns(mcfg, lc)
    ad = _random_adapters(params, lc)
    a, m, b = (np.asarray(x) for x in (attached(params, ad), merged(params, ad), base(params)))
    assert np.abs(a - b).max() > 1e-2                                       # the adapters do change the model
    np.testing.assert_allclose(a, m, atol=1e-5, rtol=0)
    # a subset of targets: only those kernels change in the merge
    sub = L.LoRAConfig(rank=2, targets=("self_attn.v", "cross_attn.k", "ffn.w2"))
    ad2 = _random_adapters(params, sub)
    mp = L.merge(params, ad2, sub)
    qkv0, qkv1 = np.asarray(params["layers"]["self_attn"]["qkv"]), np.asarray(mp["layers"]["self_attn"]["qkv"])
    np.testing.assert_array_equal(qkv0[:, :, :2], qkv1[:, :, :2])           # q, k untouched
    assert np.abs(qkv0[:, :, 2] - qkv1[:, :, 2]).max() > 0
    np.testing.assert_array_equal(params["layers"]["ffn"]["w1"], mp["layers"]["ffn"]["w1"])
    _, _, attached_sub, merged_sub = _logits_fns(mcfg, sub)
    np.testing.assert_allclose(np.asarray(attached_sub(params, ad2)), np.asarray(merged_sub(params, ad2)), atol=1e-5)


def test_config_refuses_what_cannot_train():
    with pytest.raises(ValueError, match="rank"):
        L.LoRAConfig(rank=0)
    with pytest.raises(ValueError, match="unknown"):
        L.LoRAConfig(rank=2, targets=("self_attn.q", "ffn.w3"))
    with pytest.raises(ValueError, match="alpha"):
        L.LoRAConfig(rank=2, alpha=float("nan"))
    assert L.LoRAConfig(rank=2, targets="self_attn.q, ffn.w1").targets == ("self_attn.q", "ffn.w1")
    lc = L.LoRAConfig(rank=8, alpha=16.0)
    assert lc.scale == 2.0 and L.LoRAConfig.from_dict(lc.to_dict()) == lc


def test_adapter_shardings_follow_their_kernels():
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    graphdef, params, pspecs = S.split_model(MagnetLM(_mcfg(), rngs=nnx.Rngs(0)))
    ad, specs = TL.initial_adapters(params, pspecs, L.LoRAConfig(rank=4), seed=0, mesh=mesh)
    assert specs["self_attn"]["q"] == {"a": P(None, "fsdp", None), "b": P(None, None, "tensor", None)}
    assert specs["self_attn"]["out"] == {"a": P(None, "tensor", None, None), "b": P(None, None, "fsdp")}
    assert specs["ffn"]["w2"] == {"a": P(None, "tensor", None), "b": P(None, None, "fsdp")}
    assert ad["cross_attn"]["v"]["b"].sharding.spec == P(None, None, "tensor", None)
    assert ad["self_attn"]["q"]["a"].shape == (2, 64, 4) and ad["self_attn"]["out"]["a"].shape == (2, 4, 16, 4)


# ----------------------------------------------------------------------------- training
def _cfg(remat=False, **kw) -> TrainConfig:
    c = get_config("tiny")
    c.model.segment_duration = 0.6
    c.model.remat = remat
    c.update({"batch_size": 8, "warmup_steps": 1, "learning_rate": 3e-3, "cfg_dropout": 0.0, **kw})
    return TrainConfig.from_config(c)


def _batch(c: TrainConfig):
    mcfg, B, S_txt = c.model, c.data.batch_size, c.text.max_length
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    return {"codes": np.asarray(jax.random.randint(k[0], (B, 4, mcfg.segment_frames), 0, mcfg.card)),
            "padding_mask": np.ones((B, mcfg.segment_frames), bool),
            "text_ids": np.asarray(jax.random.randint(k[1], (B, S_txt), 0, 100)),
            "text_mask": np.ones((B, S_txt), np.int32)}


def _lora_setup(c: TrainConfig, mesh):
    mcfg, lc = c.model, c.lora.adapter()
    _, t5 = load_text_stack("tiny", mcfg.text_dim)
    t5g, t5s = nnx.split(t5.module)
    graphdef, base, bspecs = S.split_model(MagnetLM(mcfg, rngs=nnx.Rngs(0)))
    base = jax.device_put(base, S.to_shardings(bspecs, mesh))
    ad, aspecs = TL.initial_adapters(base, bspecs, lc, c.loop.seed, mesh)
    tx = make_optimizer(c.optim)
    specs = S.state_specs(tx, ad, aspecs)
    state = S.init_state(tx, ad, specs, mesh)
    step = make_train_step(graphdef, t5g, c.step, tx, make_schedule(c.optim), mcfg, specs, mesh, KEYS,
                           update_bound=finite_update_bound(c.optim), lora=lc, base_specs=bspecs)
    t5p = jax.device_put(nnx.to_pure_dict(t5s), jax.sharding.NamedSharding(mesh, P()))
    return state, step, t5p, base, graphdef, bspecs, aspecs, tx


def test_lora_steps_train_only_the_adapters(tmp_path):
    c = _cfg(lora_rank=4, lora_alpha=8.0, ema_every=1)
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    state, step, t5p, base, graphdef, bspecs, aspecs, tx = _lora_setup(c, mesh)
    before = jax.tree.map(np.asarray, base)
    b0 = jax.tree.map(np.asarray, state.params)
    batch = jax.device_put(_batch(c), batch_shardings(KEYS, mesh))
    losses = []
    with sharding.use_mesh(mesh):
        for _ in range(8):                         # overfit one batch (stage and masks drawn per step)
            state, m = step(state, batch, t5p, jax.random.PRNGKey(0), base)
            losses.append(float(m["loss"]))
    assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3])
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(base)):    # the base is bit-identical
        np.testing.assert_array_equal(a, np.asarray(b))
    assert any(np.abs(np.asarray(x) - y).max() > 0 for x, y in zip(jax.tree.leaves(state.params),
                                                                      jax.tree.leaves(b0)))
    # only adapters (and their moments / EMA) in the state: AdamW's two moments are twice the adapters
    n_ad = L.num_adapter_params(state.params)
    n_opt = sum(int(x.size) for x in jax.tree.leaves(state.opt_state) if x.ndim)
    n_base = sum(int(x.size) for x in jax.tree.leaves(base))
    assert n_opt == 2 * n_ad and n_ad < n_base / 5
    assert state.params["ffn"]["w1"]["a"].sharding.spec == P(None, "fsdp", None)
    assert state.opt_state[1][0].mu["ffn"]["w1"]["b"].sharding.spec == P(None, None, "tensor")
    # the checkpoint holds the adapters, their moments, EMA and counters, nothing of the base; it restores
    ck = Checkpointer(tmp_path / "ck", async_save=False)
    ck.save(int(state.step), state, force=True)
    back = ck.restore(S.abstract_state(tx, state.params, S.state_specs(tx, state.params, aspecs), mesh))
    ck.close()
    names = {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p)
             for p, _ in jax.tree_util.tree_flatten_with_path(back.params)[0]}
    assert names == {f"{m}/{n}/{ab}" for m, ns in L.adapter_shapes(base, c.lora.adapter()).items() for n in ns
                     for ab in "ab"}
    saved = sum(f.stat().st_size for f in (tmp_path / "ck").rglob("*") if f.is_file())
    assert saved < 4 * 4 * n_base                  # far below one full-precision copy of the base per moment
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the merged EMA (what is evaluated and exported) is the attached EMA adapters
    merged = TL.make_merge(bspecs, aspecs, c.lora.adapter(), mesh)(base, state.ema)
    x = _inputs(c.model)
    want = L.attach(nnx.merge(graphdef, jax.device_get(base)), jax.device_get(state.ema), c.lora.adapter())(
        *x, stage=2)
    got = nnx.merge(graphdef, jax.device_get(merged))(*x, stage=2)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_lora_accumulation_and_remat_train_like_one_batch():
    """The frozen base reaches the loss inside the accumulation scan and through remat: 4 micro-batches with each
    layer rematerialised give the steps of one batch."""
    mesh = sharding.make_mesh(data=-1)
    out = []
    for accum, remat in ((1, False), (4, True)):
        c = _cfg(remat=remat, lora_rank=4, grad_accum_steps=accum)
        state, step, t5p, base, *_ = _lora_setup(c, mesh)
        batch = jax.device_put(_batch(c), batch_shardings(KEYS, mesh))
        with sharding.use_mesh(mesh):
            for _ in range(2):
                state, m = step(state, batch, t5p, jax.random.PRNGKey(0), base)
        out.append((float(m["loss"]), jax.tree.map(np.asarray, state.params)))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(out[0][1]), jax.tree.leaves(out[1][1])):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_train_config_lora_fields():
    c = _cfg()
    assert c.lora.lora_rank == 0 and c.lora.adapter() is None
    c = _cfg(lora_rank=8, lora_targets=("ffn.w1", "ffn.w2"))
    assert c.lora.adapter() == L.LoRAConfig(rank=8, alpha=L.DEFAULT_ALPHA, targets=("ffn.w1", "ffn.w2"))
    from magnet_jax.training import ConfigError
    with pytest.raises(ConfigError, match="lora"):
        _cfg(lora_rank=-1)
    with pytest.raises(ConfigError, match="unknown"):
        _cfg(lora_rank=2, lora_targets=("nope",))
