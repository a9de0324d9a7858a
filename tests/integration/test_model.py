"""MagnetLM behaviour beyond reference parity: options, sharding, remat, restricted context, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from magnet_jax import sharding
from magnet_jax.model import MagnetConfig, MagnetLM

CFG = MagnetConfig(dim=64, num_heads=4, num_layers=3, text_dim=32, segment_duration=1.0)


def _inputs(B=2, T=30, S=6, seed=0, cfg=CFG):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    codes = jax.random.randint(k1, (B, cfg.n_q, T), 0, cfg.card + 1)
    hidden = jax.random.normal(k2, (B, S, cfg.text_dim))
    mask = jnp.ones((B, S), jnp.int32).at[1, S // 2:].set(0)
    return codes, hidden, mask


@pytest.fixture(scope="module")
def lm():
    return MagnetLM(CFG, rngs=nnx.Rngs(0))


def test_restricted_context_is_local_for_stages_above_zero():
    cfg = CFG.replace(num_layers=1)
    lm = MagnetLM(cfg, rngs=nnx.Rngs(1))
    codes, h, m = _inputs(T=40, cfg=cfg)
    far = codes.at[:, :, 30].set((codes[:, :, 30] + 1) % cfg.card)    # change frame 30 only
    for stage in (1, 3):
        a, b = lm.stage_logits(codes, h, m, stage), lm.stage_logits(far, h, m, stage)
        d = np.abs(np.asarray(a - b)).max(-1)                         # [B, T]
        assert d[:, :30 - cfg.subcodes_context].max() == 0 and d[:, 30 + cfg.subcodes_context + 1:].max() == 0
        assert d[:, 30].max() > 0
    a, b = lm.stage_logits(codes, h, m, 0), lm.stage_logits(far, h, m, 0)
    assert np.abs(np.asarray(a - b))[:, :20].max() > 0                 # stage 0 attends everywhere


def test_any_length_and_per_sample_stages(lm):
    codes, h, m = _inputs(T=131)                                       # > segment frames, not a multiple of 8
    m = jnp.ones_like(m)            # each row alone then has the batch's text length (pad-to-longest semantics)
    per_sample = lm.stage_logits(codes, h, m, jnp.array([0, 2]))
    for b, s in enumerate((0, 2)):
        one = lm.stage_logits(codes[b:b + 1], h[b:b + 1], m[b:b + 1], s)
        np.testing.assert_allclose(np.asarray(per_sample[b]), np.asarray(one[0]), atol=1e-5)


def _pad_text(h, m, S):
    extra = S - h.shape[1]
    return (jnp.concatenate([h, jnp.zeros((h.shape[0], extra, h.shape[2]), h.dtype)], 1),
            jnp.concatenate([m, jnp.zeros((m.shape[0], extra), m.dtype)], 1))


def test_text_padding_beyond_the_longest_text_changes_nothing(lm):
    """Reference semantics (audiocraft pads a batch to its longest text, no key mask): a batch padded to
    64 (training) gives the output of the same batch padded to its longest text (inference / audiocraft)."""
    codes, h, m = _inputs()                              # row 0: 6 tokens, row 1: 3 tokens (+3 padded)
    h64, m64 = _pad_text(h, m, 64)
    for stage in (0, 2):
        a, b = lm(codes, h, m, stage=stage), lm(codes, h64, m64, stage=stage)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=5e-6, rtol=0)   # f32 roundoff (2e-6)
    # the CFG batch: null rows (zero text, zero mask) do not lengthen it
    h2, m2 = jnp.concatenate([h, 0 * h]), jnp.concatenate([m, 0 * m])
    h2p, m2p = _pad_text(h2, m2, 64)
    np.testing.assert_allclose(np.asarray(lm.stage_logits(codes.repeat(2, 0), h2, m2, 1)),
                               np.asarray(lm.stage_logits(codes.repeat(2, 0), h2p, m2p, 1)), atol=5e-6, rtol=0)
    # inside the longest text, padded keys of shorter rows still take part (reference dilution): row 1
    # alone (padded to its own 3 tokens) differs from row 1 inside the batch (padded to 6)
    alone = lm(codes[1:], h[1:, :3], m[1:, :3], stage=0)
    assert np.abs(np.asarray(alone[0] - lm(codes, h, m, stage=0)[1])).max() > 1e-4


def test_text_padding_option(lm):
    codes, h, m = _inputs()
    # reference semantics: padded (zero) keys of shorter rows dilute attention, so the batch's longest
    # text length changes a short row's logits
    h_pad = jnp.concatenate([h, jnp.zeros_like(h[:, :3])], 1)
    m_pad = jnp.concatenate([m, jnp.zeros_like(m[:, :3])], 1)
    m_pad = m_pad.at[0].set(1)                                          # row 0 now 9 tokens long
    ref_a, ref_b = lm(codes, h, m, stage=0), lm(codes, h_pad, m_pad, stage=0)
    assert np.abs(np.asarray(ref_a[1] - ref_b[1])).max() > 1e-4
    masked = MagnetLM(CFG.replace(mask_text_padding=True), rngs=nnx.Rngs(0))
    nnx.update(masked, nnx.state(lm))
    a, b = masked(codes, h, m, stage=0), masked(codes, h_pad, m_pad, stage=0)
    np.testing.assert_allclose(np.asarray(a[1]), np.asarray(b[1]), atol=1e-5)
    # a null row (all keys masked) gives zero cross-attention: the same as the reference's null row
    null_m = jnp.zeros_like(m)
    np.testing.assert_allclose(np.asarray(masked(codes, h, null_m, stage=1)), np.asarray(lm(codes, h, null_m, stage=1)),
                               atol=1e-5)


def test_bfloat16_compute_close_to_float32(lm):
    codes, h, m = _inputs()
    bf = MagnetLM(CFG.replace(dtype="bfloat16"), rngs=nnx.Rngs(0))
    nnx.update(bf, nnx.state(lm))
    a, b = lm(codes, h, m, stage=1), bf(codes, h, m, stage=1)
    assert b.dtype == jnp.float32
    assert jax.tree.leaves(nnx.state(bf, nnx.Param))[0].dtype == jnp.float32   # fp32 master weights
    rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))
    assert rel < 0.05, rel


def test_bfloat16_keeps_residual_stream_and_logits_float32(lm):
    """As audiocraft's autocast: the residual stream and the logits are float32 (bf16-rounded logits
    would hold ~half duplicate values per row of 2048, and the CFG extrapolation multiplies the error)."""
    codes, h, m = _inputs()
    bf = MagnetLM(CFG.replace(dtype="bfloat16"), rngs=nnx.Rngs(0))
    nnx.update(bf, nnx.state(lm))
    assert bf.embed_codes(codes).dtype == jnp.float32
    assert bf.hidden(codes, bf.project_text(h, m), 1, m).dtype == jnp.float32
    row = np.asarray(bf.stage_logits(codes, h, m, 1))[0, 0]
    assert len(np.unique(row)) > 0.95 * CFG.card, len(np.unique(row))


def test_remat_gives_identical_gradients(lm):
    codes, h, m = _inputs()
    remat = MagnetLM(CFG.replace(remat=True), rngs=nnx.Rngs(0))
    nnx.update(remat, nnx.state(lm))

    def loss(model):
        return jnp.mean(model.stage_logits(codes, h, m, 2) ** 2)
    g1 = nnx.grad(loss)(lm)
    g2 = nnx.grad(loss)(remat)
    for a, b in zip(jax.tree.leaves(nnx.state(g1)), jax.tree.leaves(nnx.state(g2))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_scan_compile_size_independent_of_depth():
    """Layers are scanned: the HLO of a 2-layer and an 8-layer model has the same number of ops."""
    sizes = []
    for L in (2, 8):
        lm = MagnetLM(CFG.replace(num_layers=L), rngs=nnx.Rngs(0))
        g, s = nnx.split(lm)
        codes, h, m = _inputs()
        hlo = jax.jit(lambda s, c: nnx.merge(g, s)(c, h, m, stage=1)).lower(s, codes).as_text()
        sizes.append(hlo.count("\n"))
    assert abs(sizes[0] - sizes[1]) <= 2, sizes


@pytest.mark.parametrize("remat", [False, True])
def test_layer_loop_equals_the_scan(lm, remat):
    """``scan_layers=False`` (a Python loop over per-layer slices) computes the scan's logits and gradients, and
    its HLO grows with depth (the scan's does not: test above)."""
    codes, h, m = _inputs()
    loop = MagnetLM(CFG.replace(scan_layers=False, remat=remat), rngs=nnx.Rngs(0))
    nnx.update(loop, nnx.state(lm))
    for stage in (0, 2):
        np.testing.assert_allclose(np.asarray(loop.stage_logits(codes, h, m, stage)),
                                   np.asarray(lm.stage_logits(codes, h, m, stage)), atol=2e-6)

    def loss(model):
        return jnp.mean(jnp.sin(model(codes, h, m, stage=2)))
    g1, g2 = nnx.grad(loss)(lm), nnx.grad(loss)(loop)
    (l1, t1), (l2, t2) = jax.tree.flatten(nnx.state(g1)), jax.tree.flatten(nnx.state(g2))
    assert t1 == t2
    for a, b in zip(l1, l2):
        scale = float(np.abs(np.asarray(a)).max())
        assert scale > 0
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5 * scale)
    g, s = nnx.split(loop)
    lines = [jax.jit(lambda s, c: nnx.merge(g, s)(c, h, m, stage=1)).lower(s, codes).as_text().count("\n")]
    deep = MagnetLM(CFG.replace(scan_layers=False, num_layers=2 * CFG.num_layers), rngs=nnx.Rngs(0))
    g, s = nnx.split(deep)
    lines.append(jax.jit(lambda s, c: nnx.merge(g, s)(c, h, m, stage=1)).lower(s, codes).as_text().count("\n"))
    assert lines[1] > 1.5 * lines[0], lines


@pytest.mark.parametrize("scan_layers", [True, False])
def test_sharded_forward_equals_single_device(lm, scan_layers):
    assert jax.device_count() == 8
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    model = MagnetLM(CFG.replace(scan_layers=scan_layers), rngs=nnx.Rngs(0))
    nnx.update(model, nnx.state(lm))
    sharding.shard_model(model, mesh)
    specs = sharding.state_partition_specs(nnx.state(model))
    assert specs["layers"]["ffn"]["w1"] == P(None, "fsdp", "tensor")
    assert specs["layers"]["self_attn"]["qkv"] == P(None, "fsdp", None, "tensor", None)
    assert specs["emb"] == P(None, None, None) and specs["heads"] == P(None, "fsdp", "tensor")
    w1 = model.layers.ffn.w1[...]
    assert w1.sharding.spec == P(None, "fsdp", "tensor")
    assert w1.addressable_shards[0].data.shape == (CFG.num_layers, CFG.dim // 2, CFG.ffn_dim // 2)
    codes, h, m = _inputs(B=4)
    g, s = nnx.split(model)
    with sharding.use_mesh(mesh):
        out = jax.jit(lambda s, c, h, m: nnx.merge(g, s)(c, h, m, stage=2))(s, codes, h, m)
    np.testing.assert_allclose(np.asarray(out), np.asarray(lm(codes, h, m, stage=2)), atol=1e-5)


def test_bad_inputs_raise_clear_errors(lm):
    codes, h, m = _inputs()
    with pytest.raises(ValueError, match="codes must be"):
        lm(codes[:, :2], h, m)
    with pytest.raises(ValueError, match="text_hidden"):
        lm(codes, h[..., :5], m)
    with pytest.raises(ValueError, match="text_mask"):
        lm(codes, h, m[:, :2])
    with pytest.raises(ValueError, match="divisible"):
        MagnetConfig(dim=30, num_heads=4)
    with pytest.raises(ValueError, match="unknown MagnetConfig"):
        MagnetConfig.from_dict({"dimension": 3})


def test_runtime_fields_are_marked_on_the_config():
    assert set(MagnetConfig.runtime_fields()) == {"dtype", "remat", "scan_unroll", "scan_layers",
                                                  "mask_text_padding", "attention_impl"}
    arch = CFG.replace(dtype="bfloat16", remat=True).architecture()
    assert arch == CFG.architecture() and "dtype" not in arch and arch["subcodes_context"] == 5


def test_make_mesh_rules():
    assert sharding.make_mesh(data=-1, fsdp=2, tensor=2).shape == {"data": 2, "fsdp": 2, "tensor": 2}
    with pytest.raises(ValueError, match="needs 6 devices"):
        sharding.make_mesh(data=3, fsdp=2)
