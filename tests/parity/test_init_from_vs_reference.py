"""Fine-tuning is a config switch: the initial params are those of an audiocraft checkpoint."""
import numpy as np
import pytest

from magnet_jax import sharding
from magnet_jax.configs import get_config, model_config


def test_init_from_released_checkpoint(tmp_path, monkeypatch):
    """Fine-tuning is a config switch: the initial params are the converted checkpoint's."""
    from magnet_jax.convert import load_audiocraft_lm
    from magnet_jax.convert.checkpoint import flat_params
    from magnet_jax.training.loop import initial_model
    from tests.reference import magnet_ref as R
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    R.make_checkpoint(tmp_path / "ckpt", R.magnet_xp_cfg(dim=64, num_heads=4, num_layers=2, segment_duration=2))
    c = get_config("tiny")
    c.model.text_dim = 768
    c.init_from = str(tmp_path / "ckpt")
    mesh = sharding.make_mesh(data=-1)
    _, params, specs = initial_model(c.init_from, c.seed, model_config(c), mesh)
    want = flat_params(load_audiocraft_lm(tmp_path / "ckpt"))
    np.testing.assert_array_equal(np.asarray(params["layers"]["ffn"]["w1"]), want["layers.ffn.w1"])
    np.testing.assert_array_equal(np.asarray(params["heads"]), want["heads"])
    assert params["layers"]["ffn"]["w1"].sharding.spec == specs["layers"]["ffn"]["w1"]
    c.model.num_layers = 3
    with pytest.raises(ValueError, match="does not match config.model"):
        initial_model(c.init_from, c.seed, model_config(c), mesh)
