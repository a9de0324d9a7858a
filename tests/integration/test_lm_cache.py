"""The conversion cache ($MAGNET_JAX_CACHE/lm/<key>/) is verified on load (issue 32): a damaged entry is
rebuilt from the source checkpoint, saying so, never trusted; a damaged export names the file and its format."""
import json
import logging

import numpy as np
import pytest
import yaml
from flax import nnx

from magnet_jax import convert
from magnet_jax.convert import checkpoint, lm_files
from magnet_jax.convert._torch_write import save_torch_file
from magnet_jax.model import MagnetLM

XP = {"lm_model": "transformer_lm_magnet", "solver": "magnet", "sample_rate": 32000,
      "dataset": {"segment_duration": 1}, "masking": {"span_len": 3},
      "conditioners": {"description": {"model": "t5", "t5": {"name": "t5-small", "normalize_text": False}}},
      "transformer_lm": {"dim": 32, "num_heads": 2, "num_layers": 1, "n_q": 2, "card": 16,
                         "compression_model_framerate": 50}}


@pytest.fixture()
def source(tmp_path, monkeypatch):
    """A torch-free audiocraft ``state_dict.bin`` of a tiny random MAGNeT, and an empty cache."""
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    lm = MagnetLM(convert.config_from_xp_cfg(XP), rngs=nnx.Rngs(0))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_torch_file({"best_state": convert.to_audiocraft_state_dict(lm), "xp.cfg": yaml.safe_dump(XP)},
                    folder / "state_dict.bin")
    return folder, checkpoint.flat_params(lm)


def _entry(tmp_path):
    (entry,) = (tmp_path / "cache" / "lm").iterdir()
    return entry


@pytest.mark.parametrize("damage", ["truncate", "flip", "bad_json", "manifest"])
def test_damaged_cache_entry_is_rebuilt(source, tmp_path, caplog, monkeypatch, damage):
    folder, want = source
    convert.load_audiocraft_checkpoint(folder)
    entry = _entry(tmp_path)
    st, cfg = entry / lm_files.SAFETENSORS_NAME, entry / lm_files.CONFIG_NAME
    meta = json.loads(cfg.read_text())
    assert meta["format"] == checkpoint.CACHE_FORMAT and meta["safetensors"]["bytes"] == st.stat().st_size
    good = st.read_bytes()
    if damage == "truncate":
        st.write_bytes(good[: len(good) // 2])
    elif damage == "flip":            # same size, still parses: only the checksum finds it
        body = bytearray(good)
        body[-5] ^= 0xFF
        st.write_bytes(bytes(body))
    elif damage == "bad_json":
        cfg.write_text('{"model": ')
    else:                             # a replaced file: the manifest does not describe it
        cfg.write_text(json.dumps({**meta, "safetensors": {"bytes": 1, "crc32": "0"}}))
    with caplog.at_level(logging.WARNING, logger="magnet_jax.convert"):
        again = convert.load_audiocraft_checkpoint(folder)
    assert "damaged" in caplog.text and "rebuilding" in caplog.text, caplog.text
    for k, v in want.items():
        np.testing.assert_array_equal(checkpoint.flat_params(again.lm)[k], v)
    assert st.read_bytes() == good and json.loads(cfg.read_text())["safetensors"] == meta["safetensors"]
    caplog.clear()                    # rebuilt: the next load trusts it again, silently, without the source

    def not_again(*a, **k):
        raise AssertionError("the .bin file was read again")
    monkeypatch.setattr(checkpoint, "read_state_dict_bin", not_again)
    convert.load_audiocraft_checkpoint(folder)
    assert "damaged" not in caplog.text


def test_damaged_export_names_the_file_and_format(source, tmp_path):
    folder, _ = source
    lm = convert.load_audiocraft_checkpoint(folder, cache=False).lm
    out = tmp_path / "export"
    convert.save_lm_safetensors(lm, out)
    st, cfg = out / lm_files.SAFETENSORS_NAME, out / lm_files.CONFIG_NAME
    good = st.read_bytes()
    st.write_bytes(good[:1000])
    with pytest.raises(lm_files.DamagedFileError, match="magnet_jax_lm.safetensors.*truncated"):
        convert.load_lm_safetensors(out)
    cfg.write_text(json.dumps({k: v for k, v in json.loads(cfg.read_text()).items() if k != "safetensors"}))
    with pytest.raises(lm_files.DamagedFileError, match="not a readable safetensors file"):
        convert.load_lm_safetensors(out)
    st.write_bytes(good)
    cfg.write_text("not json")
    with pytest.raises(lm_files.DamagedFileError, match="magnet_jax_config.json.*not valid JSON"):
        convert.load_lm_safetensors(out)
