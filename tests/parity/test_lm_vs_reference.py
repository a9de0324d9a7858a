"""MagnetLM vs audiocraft 1.3.0 MagnetLMModel: same random weights (saved in the released
``state_dict.bin`` layout, loaded by audiocraft's own loader and by ours) -> same logits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from magnet_jax.convert import load_audiocraft_lm
from tests.reference import magnet_ref as R

TOL = 1e-4

ARCHS = {
    # name: (xp_cfg kwargs, (B, T, S))
    "released_like": (dict(dim=64, num_heads=4, num_layers=2, segment_duration=2), [(2, 37, 7), (1, 100, 3)]),
    "deeper_ctx3_large_t5": (dict(dim=96, num_heads=6, num_layers=3, subcodes_context=3, t5_name="t5-large",
                                  segment_duration=2), [(2, 50, 5), (3, 11, 9)]),
    # audiocraft's other positions (transformer_lm.positional_embedding / positional_scale)
    "rope": (dict(dim=64, num_heads=4, num_layers=2, positional_embedding="rope"), [(2, 37, 7)]),
    "sin_rope_scale_half": (dict(dim=48, num_heads=2, num_layers=2, positional_embedding="sin_rope",
                                 positional_scale=0.5), [(2, 60, 5)]),
    "k2_card64_ctx0": (dict(dim=32, num_heads=2, num_layers=1, n_q=2, card=64, subcodes_context=0,
                            hidden_scale=2, segment_duration=1), [(2, 49, 4)]),
}


def _inputs(B, T, S, K, card, E, seed):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, card + 1, (B, K, T), generator=g)       # mask id = card included
    hidden = torch.randn(B, S, E, generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    if B > 1:
        mask[1, S // 2:] = 0                                          # padded text
    if B > 2:
        mask[2] = 0                                                    # a null (empty-text) row
    return codes, hidden, mask


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request, tmp_path_factory):
    kw, shapes = ARCHS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    xp = R.magnet_xp_cfg(**kw)
    R.make_checkpoint(folder, xp, seed=3)
    return xp, shapes, R.load_reference(folder), load_audiocraft_lm(folder, cache=False)


def test_logits_match_reference_all_stages(arch):
    xp, shapes, ref, ours = arch
    tl = xp["transformer_lm"]
    E = R.T5_DIMS[xp["conditioners"]["description"]["t5"]["name"]]
    for i, (B, T, S) in enumerate(shapes):
        codes, hidden, mask = _inputs(B, T, S, tl["n_q"], tl["card"], E, seed=i)
        # the CFG batch of generation: conditional rows + their null rows (zero text, zero mask)
        codes2 = torch.cat([codes, codes])
        hidden2 = torch.cat([hidden, torch.zeros_like(hidden)])
        mask2 = torch.cat([mask, torch.zeros_like(mask)])
        args = [jnp.asarray(x.numpy()) for x in (codes2, hidden2, mask2)]
        for stage in range(tl["n_q"]):
            want = R.reference_logits(ref, codes2, hidden2, mask2, stage).numpy()
            got = np.asarray(ours(*args, stage=stage))
            assert got.shape == want.shape == (2 * B, tl["n_q"], T, tl["card"])
            err = np.abs(got - want).max()
            assert err <= TOL, f"stage {stage} B,T,S={B, T, S}: max |diff| {err:.2e}"
            # the single-head path used by decoding / training agrees too
            sl = np.asarray(ours.stage_logits(*args, stage))
            assert np.abs(sl - want[:, stage]).max() <= TOL


def test_traced_stage_is_one_program(arch):
    xp, shapes, ref, ours = arch
    B, T, S = shapes[0]
    tl = xp["transformer_lm"]
    E = R.T5_DIMS[xp["conditioners"]["description"]["t5"]["name"]]
    codes, hidden, mask = _inputs(B, T, S, tl["n_q"], tl["card"], E, seed=7)
    args = [jnp.asarray(x.numpy()) for x in (codes, hidden, mask)]
    from flax import nnx
    graphdef, state = nnx.split(ours)
    traces = []

    @jax.jit
    def f(state, codes, hidden, mask, stage):
        traces.append(1)
        return nnx.merge(graphdef, state)(codes, hidden, mask, stage=stage)

    for stage in range(tl["n_q"]):
        want = R.reference_logits(ref, codes, hidden, mask, stage).numpy()
        got = np.asarray(f(state, *args, jnp.int32(stage)))
        assert np.abs(got - want).max() <= TOL
    assert len(traces) == 1


def test_float16_checkpoint(tmp_path):
    """Released best_state tensors may be float16: both loaders upcast the same fp16 values."""
    xp = R.magnet_xp_cfg(dim=64, num_heads=4, num_layers=2, segment_duration=1)
    R.make_checkpoint(tmp_path, xp, seed=5, half=True)
    pkg = torch.load(tmp_path / "state_dict.bin", weights_only=True)
    assert all(v.dtype == torch.float16 for v in pkg["best_state"].values())
    ref, ours = R.load_reference(tmp_path), load_audiocraft_lm(tmp_path, cache=False)
    codes, hidden, mask = _inputs(2, 40, 5, 4, 2048, 768, seed=1)
    for stage in (0, 2):
        want = R.reference_logits(ref, codes, hidden, mask, stage).numpy()
        got = np.asarray(ours(*[jnp.asarray(x.numpy()) for x in (codes, hidden, mask)], stage=stage))
        assert np.abs(got - want).max() <= TOL


@pytest.mark.parametrize("stage", [0, 1])
def test_training_gradients_match_reference(arch, stage):
    """d(masked CE)/d(every parameter) vs audiocraft's ``loss.backward()`` (its MagnetSolver loss on one stage:
    CE of that codebook's logits where it is masked), the torch gradients mapped with the checkpoint
    converter. Stage 0 attends fully, stage 1 on the band (the training step's traced stage, custom VJPs)."""
    from flax import nnx, traverse_util

    from magnet_jax.convert.lm_params import params_from_state_dict, rope_buffers
    from magnet_jax.objectives import magnet as masking
    xp, shapes, ref, ours = arch
    tl = xp["transformer_lm"]
    K, card = tl["n_q"], tl["card"]
    if stage >= K:
        pytest.skip("the architecture has fewer codebooks")
    E = R.T5_DIMS[xp["conditioners"]["description"]["t5"]["name"]]
    B, T, S = shapes[0]
    codes, hidden, tmask = _inputs(B, T, S, K, card - 1, E, seed=5)          # no mask id in the targets
    g = torch.Generator().manual_seed(7)
    masked = torch.rand(B, T, generator=g) < 0.5
    inputs = codes.clone()
    inputs[:, stage][masked] = card
    inputs[:, stage + 1:] = card
    targets = codes[:, stage].clone()
    targets[~masked] = -1

    ref.train()
    ref.zero_grad(set_to_none=True)
    out = ref(inputs, [], R.condition_tensors(ref, hidden, tmask, grad=True), stage=stage)
    loss_ref = torch.nn.functional.cross_entropy(out[:, stage].reshape(-1, card), targets.reshape(-1), ignore_index=-1)
    loss_ref.backward()
    grads_ref = params_from_state_dict({k: (p.grad if p.grad is not None else torch.zeros_like(p))
                                        for k, p in ref.named_parameters()} | rope_buffers(ours.config),
                                       ours.config)
    ref.eval()

    gd, state = nnx.split(ours)
    batch = {"inputs": jnp.asarray(inputs.numpy()), "stage": jnp.asarray(stage),
             "targets": jnp.asarray(np.maximum(targets.numpy(), 0)), "weights": jnp.asarray(masked.numpy()),
             "text_mask": jnp.asarray(tmask.numpy())}
    loss, grads = jax.jit(jax.value_and_grad(
        lambda s: masking.loss_from_batch(nnx.merge(gd, s), batch, jnp.asarray(hidden.numpy()))[0]))(state)
    assert abs(float(loss) - loss_ref.item()) <= TOL
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(grads), sep=".")
    assert set(flat) == set(grads_ref)
    for name, want in grads_ref.items():
        got = np.asarray(flat[name])
        scale = max(np.abs(want).max(), 1e-6)
        err = np.abs(got - want).max() / scale
        assert err <= 1e-4, f"{name}: max |diff| / max |grad| = {err:.2e}"
