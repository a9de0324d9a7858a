"""Checkpoint loading: layouts, cache, round trip and the errors users see."""
import os

import numpy as np
import pytest
import torch
import yaml
import jax.numpy as jnp

from tests.reference import magnet_ref as R
from magnet_jax import convert, hub
from magnet_jax.convert import audiocraft as ac


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    xp = R.magnet_xp_cfg(dim=32, num_heads=2, num_layers=2, segment_duration=1)
    ref = R.make_checkpoint(folder, xp, seed=1)
    return folder, xp, ref


def test_config_from_xp_cfg(ckpt):
    folder, xp, _ = ckpt
    cfg = convert.config_from_xp_cfg(yaml.safe_dump(xp))
    assert (cfg.dim, cfg.num_heads, cfg.num_layers, cfg.n_q, cfg.card, cfg.text_dim) == (32, 2, 2, 4, 2048, 768)
    assert (cfg.subcodes_context, cfg.span_len, cfg.segment_frames) == (5, 3, 50)


def test_state_dict_round_trip(ckpt):
    folder, _, ref = ckpt
    lm = convert.load_audiocraft_lm(folder, cache=False)
    back = convert.to_audiocraft_state_dict(lm)
    sd = ref.state_dict()
    assert set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v.numpy(), err_msg=k)


def test_cache_makes_torch_unnecessary(ckpt, tmp_path, monkeypatch):
    folder, _, _ = ckpt
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    first = convert.load_audiocraft_lm(folder)
    cached = list((tmp_path / "cache" / "lm").glob(f"*/{ac.SAFETENSORS_NAME}"))
    assert len(cached) == 1

    def no_torch(*a, **k):
        raise AssertionError("the .bin file was read again")
    monkeypatch.setattr(ac, "read_state_dict_bin", no_torch)
    second = convert.load_audiocraft_lm(folder, dtype="bfloat16")
    assert second.config.dtype == "bfloat16"
    for k, v in ac.flat_params(first).items():
        np.testing.assert_array_equal(ac.flat_params(second)[k], v)
    # the exported folder itself loads too (no torch involved)
    again = convert.load_audiocraft_lm(cached[0].parent)
    codes = jnp.zeros((1, 4, 9), jnp.int32)
    h, m = jnp.ones((1, 2, 768)), jnp.ones((1, 2))
    np.testing.assert_array_equal(np.asarray(again(codes, h, m, stage=1)), np.asarray(first(codes, h, m, stage=1)))


def test_not_a_magnet_checkpoint(tmp_path):
    xp = R.magnet_xp_cfg()
    xp["lm_model"] = "transformer_lm"
    torch.save({"best_state": {}, "xp.cfg": yaml.safe_dump(xp)}, tmp_path / "state_dict.bin")
    with pytest.raises(convert.CheckpointError, match="MusicGen"):
        convert.load_audiocraft_lm(tmp_path, cache=False)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "state_dict.bin")
    with pytest.raises(convert.CheckpointError, match="best_state"):
        convert.load_audiocraft_lm(tmp_path, cache=False)
    (tmp_path / "state_dict.bin").write_bytes(b"not a checkpoint at all")
    with pytest.raises(convert.CheckpointError, match="cannot be read"):
        convert.load_audiocraft_lm(tmp_path, cache=False)


def test_wrong_shapes_are_named(ckpt, tmp_path):
    folder, xp, _ = ckpt
    pkg = torch.load(folder / "state_dict.bin", weights_only=True)
    pkg["best_state"]["transformer.layers.1.linear1.weight"] = torch.zeros(5, 5)
    torch.save(pkg, tmp_path / "state_dict.bin")
    with pytest.raises(convert.CheckpointError, match="layers.1.linear1.weight"):
        convert.load_audiocraft_lm(tmp_path, cache=False)


def test_unsupported_variant_is_refused():
    xp = R.magnet_xp_cfg()
    xp["transformer_lm"]["bias_attn"] = True
    with pytest.raises(convert.CheckpointError, match="bias_attn"):
        convert.config_from_xp_cfg(xp)


def test_hub_unreachable_says_use_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(hub.HubError, match="local folder"):
        convert.load_audiocraft_lm("facebook/magnet-small-10secs")
    with pytest.raises(hub.HubError, match="neither an existing local path"):
        convert.load_audiocraft_lm(str(tmp_path / "no" / "such" / "dir"))
    with pytest.raises(hub.HubError, match="state_dict.bin"):
        convert.load_audiocraft_lm(tmp_path)
