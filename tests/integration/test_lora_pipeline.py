"""A LoRA adapter saved alone (magnet_jax/model/lora_files.py) and applied at load time:
``MagnetPipeline.from_pretrained(base, adapter=PATH)`` gives the logits of the merged export; an adapter of another
architecture is refused, one recorded on another base is applied with a warning, a damaged file is named."""
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.configs import get_config
from magnet_jax.convert import save_lm_safetensors
from magnet_jax.model import MagnetLM
from magnet_jax.model import lora as L
from magnet_jax.model.config import MagnetConfig
from magnet_jax.model.lora_files import ADAPTER_NAME, AdapterError, load_adapter, save_adapter
from magnet_jax.pipelines.magnet import MagnetPipeline
from magnet_jax.training import state as S


def _mcfg(**kw) -> MagnetConfig:
    return MagnetConfig.from_dict({**get_config("tiny").model.to_dict(), "segment_duration": 0.6, **kw})


@pytest.fixture()
def stand_ins(monkeypatch):
    """The tiny T5 and a random codec instead of hub downloads."""
    import magnet_jax.convert.encodec as codec_pkg
    from magnet_jax.codec.random_init import random_encodec
    monkeypatch.setattr(codec_pkg, "load_encodec", lambda src, num_codebooks=None, **kw: random_encodec(
        sample_rate=32000, frame_rate=50, num_codebooks=4, bins=2048, channels=1, seed=0))


@pytest.fixture()
def folders(tmp_path):
    """A base export, a trained-looking adapter on it (alone), and the merged export of the two."""
    mcfg, lc = _mcfg(), L.LoRAConfig(rank=4, alpha=8.0, targets=("self_attn.q", "self_attn.v", "cross_attn.out",
                                                                "ffn.w1", "ffn.w2"))
    lm = MagnetLM(mcfg, rngs=nnx.Rngs(0))
    graphdef, params, _ = S.split_model(lm)
    ad = L.init_adapters(params, lc, jax.random.PRNGKey(1))
    ad = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(x.size), x.shape), ad)
    save_lm_safetensors(lm, tmp_path / "base", extra={"t5": "tiny"})
    save_adapter(tmp_path / "adapter", jax.device_get(ad), lc, base=str(tmp_path / "base"),
                 architecture=mcfg.architecture(), extra={"step": 3})
    save_lm_safetensors(nnx.merge(graphdef, L.merge(params, ad, lc)), tmp_path / "merged", extra={"t5": "tiny"})
    return tmp_path, ad, lc


def _logits(pipe, stage=1):
    mcfg = pipe.lm.config
    k = jax.random.split(jax.random.PRNGKey(5), 2)
    codes = jax.random.randint(k[0], (2, mcfg.n_q, mcfg.segment_frames), 0, mcfg.card)
    hidden = jax.random.normal(k[1], (2, 6, mcfg.text_dim))
    return np.asarray(pipe.lm(codes, hidden, jnp.ones((2, 6), jnp.int32), stage=stage))


def test_adapter_files_round_trip(folders):
    root, ad, lc = folders
    back, cfg, meta = load_adapter(root / "adapter" / ADAPTER_NAME)     # the file or its folder
    assert cfg == lc and meta["step"] == 3 and meta["base"] == str(root / "base")
    for a, b in zip(jax.tree.leaves(ad), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), b)
    n_ad = L.num_adapter_params(back)
    n_base = sum(int(x.size) for x in jax.tree.leaves(nnx.state(MagnetLM(_mcfg(), rngs=nnx.Rngs(0)), nnx.Param)))
    assert (root / "adapter" / ADAPTER_NAME).stat().st_size < 4 * n_ad + 4096 and n_ad < n_base / 10


def test_from_pretrained_with_adapter_equals_the_merged_export(folders, stand_ins):
    root, _, _ = folders
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # same base: no warning
        adapted = MagnetPipeline.from_pretrained(str(root / "base"), adapter=str(root / "adapter"))
    merged = MagnetPipeline.from_pretrained(str(root / "merged"))
    plain = MagnetPipeline.from_pretrained(str(root / "base"))
    for stage in (0, 2):
        got, want = _logits(adapted, stage), _logits(merged, stage)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        assert np.abs(got - _logits(plain, stage)).max() > 1e-2
    codes = np.asarray(adapted.generate_codes(["a b"], duration=0.3, decoding_steps=(2, 1, 1, 1), seed=0))
    assert codes.shape == (1, 4, 15)


def test_adapter_on_another_base_warns_another_architecture_fails(folders, stand_ins, tmp_path):
    root, _, lc = folders
    shutil.copytree(root / "base", tmp_path / "copy")
    with pytest.warns(UserWarning, match="trained on"):
        MagnetPipeline.from_pretrained(str(tmp_path / "copy"), adapter=str(root / "adapter"))
    wide = _mcfg(dim=32)
    save_lm_safetensors(MagnetLM(wide, rngs=nnx.Rngs(0)), tmp_path / "wide", extra={"t5": "tiny"})
    with pytest.raises(AdapterError, match="another architecture"):
        MagnetPipeline.from_pretrained(str(tmp_path / "wide"), adapter=str(root / "adapter"))
    # no recorded architecture (hand-made adapter): the shapes are still checked
    params = nnx.to_pure_dict(nnx.state(MagnetLM(_mcfg(), rngs=nnx.Rngs(0)), nnx.Param))
    save_adapter(tmp_path / "bare", jax.device_get(L.init_adapters(params, lc, jax.random.PRNGKey(0))), lc)
    with pytest.raises(AdapterError, match="does not fit"):
        MagnetPipeline.from_pretrained(str(tmp_path / "wide"), adapter=str(tmp_path / "bare"))


def test_damaged_or_missing_adapter_is_named(folders, tmp_path):
    root, _, _ = folders
    with pytest.raises(AdapterError, match="not a LoRA adapter"):
        load_adapter(tmp_path / "nothing")
    shutil.copytree(root / "adapter", tmp_path / "cut")
    f = tmp_path / "cut" / ADAPTER_NAME
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(AdapterError, match="truncated"):
        load_adapter(tmp_path / "cut")
