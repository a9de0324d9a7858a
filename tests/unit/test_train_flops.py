"""The model-FLOPs estimate behind MFU (training/metrics.py): full training counts 3x the forward; LoRA counts the
frozen base's weight matmuls 2x (forward + input gradient, no weight gradient), attention 3x, the text-side
projections 1x and the adapters 3x their own forward."""
import jax
import pytest
from flax import nnx

from magnet_jax import presets
from magnet_jax.configs import get_config
from magnet_jax.model import MagnetLM
from magnet_jax.model import lora as L
from magnet_jax.model.config import MagnetConfig
from magnet_jax.training import state as S
from magnet_jax.training.metrics import lora_adapter_flops, train_flops_per_step


def _tiny() -> MagnetConfig:
    return MagnetConfig.from_dict(get_config("tiny").model.to_dict())


def _parts(m, T, St):
    D, Lyr, F = m.dim, m.num_layers, m.ffn_dim
    token_w = T * (Lyr * (8 * D * D + 4 * D * D + 4 * D * F) + 2 * D * m.card)
    attn = T * Lyr * (4 * T * D + 4 * St * D)
    text_w = St * (Lyr * 4 * D * D + 2 * m.text_dim * D)
    return token_w, attn, text_w


def test_full_training_is_three_forwards():
    m, B, T, St = _tiny(), 3, 50, 7
    token_w, attn, text_w = _parts(m, T, St)
    assert train_flops_per_step(m, B, T, St) == pytest.approx(3 * B * (token_w + attn + text_w), rel=1e-12)
    assert train_flops_per_step(m, B, T, St, lora=None) == train_flops_per_step(m, B, T, St)


@pytest.mark.parametrize("targets", [L.DEFAULT_TARGETS, ("self_attn.q", "cross_attn.k", "ffn.w2")])
def test_adapter_flops_are_two_per_adapter_parameter_and_token(targets):
    """With as many text tokens as frames, the adapters' forward is 2 FLOPs per adapter parameter and token: the
    analytic dims of each target equal the adapters' real shapes."""
    m, lc = _tiny(), L.LoRAConfig(rank=4, targets=targets)
    _, params, _ = S.split_model(nnx.eval_shape(lambda: MagnetLM(m, rngs=nnx.Rngs(0))))
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    n_lora = L.num_adapter_params(jax.eval_shape(lambda: L.init_adapters(shapes, lc, jax.random.PRNGKey(0))))
    assert lora_adapter_flops(m, 20, 20, lc) == pytest.approx(2 * 20 * n_lora, rel=1e-12)


def test_lora_counts_no_base_weight_gradient():
    m, B, T, St = _tiny(), 2, 50, 7
    lc = L.LoRAConfig(rank=8)
    token_w, attn, text_w = _parts(m, T, St)
    want = B * (2 * token_w + 3 * attn + text_w + 3 * lora_adapter_flops(m, T, St, lc))
    assert train_flops_per_step(m, B, T, St, lora=lc) == pytest.approx(want, rel=1e-12)
    assert train_flops_per_step(m, B, T, St, lora=lc) < train_flops_per_step(m, B, T, St)


def test_lora_is_about_two_thirds_of_full_at_a_released_size():
    """magnet-medium at 10 s: the weight matmuls dominate, so LoRA rank 8 is close to 4N / 6N of full training."""
    m = presets.get("magnet_medium_10secs").model
    full = train_flops_per_step(m, 1, m.segment_frames, 64)
    lora = train_flops_per_step(m, 1, m.segment_frames, 64, lora=L.LoRAConfig(rank=8))
    assert 0.62 < lora / full < 0.72
