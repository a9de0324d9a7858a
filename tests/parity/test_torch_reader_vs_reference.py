"""The torch-free reader (magnet_jax.convert._torch) vs torch.load(weights_only=True), bit for bit, on every
checkpoint layout magnet-jax reads; the reading process never imports torch."""
from __future__ import annotations

import collections
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.reference import encodec_ref as E
from tests.reference import magnet_ref as R

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{layout: path}: each written by the reference package that produces it (or torch.save)."""
    from audiocraft.utils.export import export_pretrained_compression_model  # after the shim (magnet_ref)
    from transformers import T5Config, T5EncoderModel
    d = tmp_path_factory.mktemp("torchfiles")
    out = {}
    xp = R.magnet_xp_cfg(dim=32, num_heads=2, num_layers=2, segment_duration=1)
    R.make_checkpoint(d / "lm16", xp, seed=1, half=True)                     # released: fp16 best_state + xp.cfg
    out["audiocraft_state_dict_fp16"] = d / "lm16" / "state_dict.bin"
    R.make_checkpoint(d / "lm32", xp, seed=2)
    out["audiocraft_state_dict_fp32"] = d / "lm32" / "state_dict.bin"
    export_pretrained_compression_model("facebook/encodec_32khz", d / "redirect" / "compression_state_dict.bin")
    out["compression_redirect"] = d / "redirect" / "compression_state_dict.bin"
    cfg = E.native_cfg(ratios=(4, 2), n_filters=4, dimension=8, lstm=1, n_q=2, bins=16)
    E.native_checkpoint(E.native_model(cfg), cfg, d / "native.bin")        # audio-MAGNeT style {xp.cfg, best_state}
    out["compression_native"] = d / "native.bin"
    t5 = T5EncoderModel(T5Config(vocab_size=40, d_model=16, d_kv=4, num_heads=2, d_ff=24, num_layers=1)).eval()
    torch.save(t5.state_dict(), d / "pytorch_model.bin")                     # transformers' pre-safetensors layout
    out["transformers_pytorch_model_bin"] = d / "pytorch_model.bin"
    t5bf = T5EncoderModel(T5Config(vocab_size=40, d_model=16, d_kv=4, num_heads=2, d_ff=24, num_layers=1))
    torch.save(t5bf.to(torch.bfloat16).state_dict(), d / "bf16.bin")
    out["transformers_bf16_bin"] = d / "bf16.bin"
    pkg = E.pkg_model("24khz", n_filters=4, ratios=[4, 2], lstm=1, n_q=2, bins=16)
    torch.save(pkg.state_dict(), d / "encodec_24khz-d7cc33bc.th")            # the encodec package's .th
    out["encodec_package_th"] = d / "encodec_24khz-d7cc33bc.th"
    torch.save(torch.load(out["audiocraft_state_dict_fp16"], weights_only=True), d / "legacy.bin",
               _use_new_zipfile_serialization=False)                          # pre-1.6 serialization
    out["legacy_format"] = d / "legacy.bin"
    views = collections.OrderedDict(base=torch.arange(24.0).reshape(4, 6))
    views["t"], views["slice"] = views["base"].t(), views["base"][1:3, 2:]   # shared storage, strides, offset
    views["p"] = torch.nn.Parameter(torch.randn(3, 2))
    views["misc"] = {"ints": torch.arange(5), "bool": torch.tensor([True, False]), "f64": torch.randn(2).double(),
                     "empty": torch.zeros(0, 3), "i8": torch.tensor([-3, 7], dtype=torch.int8), "n": 3, "s": "x"}
    torch.save(views, d / "views.pt")
    out["views_and_dtypes"] = d / "views.pt"
    return out


def _read_without_torch(paths: dict, out_file) -> dict:
    """Runs load_torch_file on every file in a subprocess where importing torch fails."""
    code = (
        "import pickle, sys\n"
        "sys.modules['torch'] = None  # any import of torch raises\n"
        "from magnet_jax.convert import load_torch_file\n"
        f"paths = pickle.load(open({str(out_file) + '.in'!r}, 'rb'))\n"
        "res = {k: load_torch_file(p) for k, p in paths.items()}\n"
        "assert not [m for m, v in sys.modules.items() if m.split('.')[0] == 'torch' and v is not None]\n"
        f"pickle.dump(res, open({str(out_file)!r}, 'wb'))\n"
    )
    with open(str(out_file) + ".in", "wb") as fh:
        pickle.dump({k: str(v) for k, v in paths.items()}, fh)
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(out_file, "rb") as fh:
        return pickle.load(fh)


def _assert_same(got, ref, where="root"):
    if isinstance(ref, torch.Tensor):
        assert isinstance(got, np.ndarray), f"{where}: {type(got)}"
        ref = ref.detach()
        assert got.shape == tuple(ref.shape), where
        if ref.dtype == torch.bfloat16:
            assert str(got.dtype) == "bfloat16", where
            np.testing.assert_array_equal(got.view(np.uint16), ref.view(torch.int16).numpy().view(np.uint16), where)
        else:
            want = ref.numpy()
            assert got.dtype == want.dtype, f"{where}: {got.dtype} != {want.dtype}"
            np.testing.assert_array_equal(got.view(np.uint8), np.ascontiguousarray(want).view(np.uint8), where)
    elif isinstance(ref, dict):
        assert type(got) is type(ref) and list(got) == list(ref), where
        for k in ref:
            _assert_same(got[k], ref[k], f"{where}.{k}")
    elif isinstance(ref, (list, tuple)):
        assert type(got) is type(ref) and len(got) == len(ref), where
        for i, (g, r) in enumerate(zip(got, ref)):
            _assert_same(g, r, f"{where}[{i}]")
    else:
        assert got == ref and type(got) is type(ref), f"{where}: {got!r} != {ref!r}"


def test_bit_exact_against_torch_load_without_importing_torch(files, tmp_path):
    got = _read_without_torch(files, tmp_path / "read.pkl")
    for layout, path in files.items():
        _assert_same(got[layout], torch.load(path, map_location="cpu", weights_only=True), layout)
    sd = got["audiocraft_state_dict_fp16"]
    assert sd["best_state"]["emb.0.weight"].dtype == np.float16 and isinstance(sd["xp.cfg"], str)
    assert got["compression_redirect"]["pretrained"] == "facebook/encodec_32khz"


def test_refuses_what_torch_refuses(tmp_path):
    """A torch file holding an arbitrary object: torch.load(weights_only=True) refuses it, and so do we."""
    from magnet_jax.convert import TorchFileError, load_torch_file
    torch.save({"w": torch.zeros(2), "obj": collections.defaultdict(int)}, tmp_path / "x.bin")
    with pytest.raises(Exception):
        torch.load(tmp_path / "x.bin", weights_only=True)
    with pytest.raises(TorchFileError, match="collections.defaultdict"):
        load_torch_file(tmp_path / "x.bin")
