"""audiocraft MAGNeT checkpoints -> MagnetLM: layouts, the facts the loader reports, cache, errors users see.
Checkpoints are written by audiocraft's own builder (tests/reference/magnet_ref); reading them needs no torch."""
import copy

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import yaml

from magnet_jax import convert, hub
from magnet_jax.convert import checkpoint as ac
from magnet_jax.text.presets import T5_MODELS, WIDTHS
from tests.reference import magnet_ref as R


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    xp = R.magnet_xp_cfg(dim=32, num_heads=2, num_layers=2, segment_duration=1)
    ref = R.make_checkpoint(folder, xp, seed=1)
    return folder, xp, ref


def _write(folder, xp, sd=None, src=None):
    """A state_dict.bin with the given xp.cfg (and the weights of ``src``'s checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    pkg = torch.load(src / "state_dict.bin", weights_only=True) if src is not None else {"best_state": {}}
    pkg["xp.cfg"] = yaml.safe_dump(xp)
    if sd is not None:
        pkg["best_state"] = sd
    torch.save(pkg, folder / "state_dict.bin")
    return folder


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


def test_float16_checkpoint_widens_exactly(tmp_path):
    """The released best_state is float16: every weight is its float16 value, exactly, in float32."""
    xp = R.magnet_xp_cfg(dim=32, num_heads=2, num_layers=2, segment_duration=1)
    ref = R.make_checkpoint(tmp_path, xp, seed=4, half=True)
    back = convert.to_audiocraft_state_dict(convert.load_audiocraft_lm(tmp_path, cache=False))
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(back[k], v.half().float().numpy(), err_msg=k)


def test_checkpoint_facts(ckpt, tmp_path):
    """The loader reports what the xp.cfg says: T5, kind (from the solver), window, codec folder."""
    folder, xp, _ = ckpt
    ck = convert.load_audiocraft_checkpoint(folder, cache=False)
    assert (ck.t5_name, ck.kind, ck.segment_duration, ck.codec_source) == ("t5-base", "music", 1.0, str(folder))
    assert ck.lm.config.segment_duration == 1.0
    audio = dict(copy.deepcopy(xp), solver="audio_magnet", sample_rate=16000)
    ck = convert.load_audiocraft_checkpoint(_write(tmp_path / "audio", audio, src=folder) / "state_dict.bin",
                                            cache=False)
    assert (ck.kind, ck.codec_source) == ("audio", str(tmp_path / "audio"))   # a file: the codec is next to it
    assert ac.kind_from_xp_cfg({k: v for k, v in audio.items() if k != "solver"}) == "audio"
    assert ac.kind_from_xp_cfg({k: v for k, v in xp.items() if k != "solver"}, "facebook/audio-magnet-small") == "audio"
    assert ac.kind_from_xp_cfg(dict(audio, solver="my_finetune_solver")) == "audio"     # custom solver: the rate


def test_every_audiocraft_t5_name(ckpt):
    for name in T5_MODELS:
        cfg = convert.config_from_xp_cfg(R.magnet_xp_cfg(t5_name=name))
        assert cfg.text_dim == WIDTHS[name]
        assert ac.t5_name_from_xp_cfg(R.magnet_xp_cfg(t5_name=name)) == name
    assert ac.t5_name_from_xp_cfg(R.magnet_xp_cfg(t5_name="google-t5/t5-large")) == "t5-large"
    with pytest.raises(convert.CheckpointError, match="T5Conditioner does not accept"):
        convert.config_from_xp_cfg(R.magnet_xp_cfg(t5_name="bert-base-uncased"))


def test_t5_width_is_checked_against_output_proj(ckpt, tmp_path):
    """A t5-base-trained LM whose xp.cfg claims t5-large: refused by name, not a later shape error."""
    folder, xp, _ = ckpt
    _write(tmp_path, dict(copy.deepcopy(xp), conditioners={**xp["conditioners"], "description": {
        "model": "t5", "t5": {"name": "t5-large", "normalize_text": False}}}), src=folder)
    with pytest.raises(convert.CheckpointError, match="768-dim T5 states, but its xp.cfg names t5-large"):
        convert.load_audiocraft_lm(tmp_path, cache=False)


@pytest.mark.parametrize("path, value, match", [
    (("codebooks_pattern", "modeling"), "delay", "codebooks_pattern.modeling='delay'"),
    (("conditioners", "description", "t5", "normalize_text"), True, "normalize_text"),
    (("transformer_lm", "past_context"), 250, "past_context"),
    (("transformer_lm", "bias_attn"), True, "bias_attn"),
])
def test_unsupported_xp_cfg_fields_are_refused(path, value, match):
    xp = R.magnet_xp_cfg()
    node = xp
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(convert.CheckpointError, match=match):
        convert.config_from_xp_cfg(xp)


def test_interpolations_in_the_sections_read(ckpt):
    xp = R.magnet_xp_cfg(segment_duration=7)
    xp["transformer_lm"]["segment_duration"] = "${dataset.segment_duration}"
    xp["unrelated"] = "${does.not.exist}"                   # a section the loader does not read: ignored
    assert convert.config_from_xp_cfg(xp).segment_duration == 7.0
    xp["masking"]["span_len"] = "${nowhere.span}"
    with pytest.raises(convert.CheckpointError, match="cannot resolve"):
        convert.config_from_xp_cfg(xp)


def test_runtime_overrides_only(ckpt):
    folder, _, _ = ckpt
    lm = convert.load_audiocraft_lm(folder, cache=False, dtype="bfloat16", remat=True)
    assert (lm.config.dtype, lm.config.remat) == ("bfloat16", True)
    with pytest.raises(TypeError, match="cannot override \\['dim'\\]"):
        convert.load_audiocraft_lm(folder, cache=False, dim=64)


def test_cache_holds_the_facts(ckpt, tmp_path, monkeypatch):
    folder, _, _ = ckpt
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    first = convert.load_audiocraft_lm(folder)
    cached = list((tmp_path / "cache" / "lm").glob(f"*/{ac.SAFETENSORS_NAME}"))
    assert len(cached) == 1

    def not_again(*a, **k):
        raise AssertionError("the .bin file was read again")
    monkeypatch.setattr(ac, "read_state_dict_bin", not_again)
    second = convert.load_audiocraft_checkpoint(folder, dtype="bfloat16")
    assert second.lm.config.dtype == "bfloat16" and (second.t5_name, second.kind) == ("t5-base", "music")
    for k, v in ac.flat_params(first).items():
        np.testing.assert_array_equal(ac.flat_params(second.lm)[k], v)
    # the exported folder itself loads too
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


def test_hub_unreachable_says_use_a_local_folder(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(hub.HubError, match="local folder"):
        convert.load_audiocraft_lm("facebook/magnet-small-10secs")
    with pytest.raises(hub.HubError, match="local folder"):
        convert.load_audiocraft_lm("someone/a-fine-tuned-magnet")       # any repo id is tried, not only the six
    with pytest.raises(hub.HubError, match="neither an existing local path"):
        convert.load_audiocraft_lm(str(tmp_path / "no" / "such" / "dir"))
    with pytest.raises(hub.HubError, match="state_dict.bin"):
        convert.load_audiocraft_lm(tmp_path)
