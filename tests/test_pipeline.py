"""Text -> audio end to end: MagnetPipeline (random-init and loaded from the released on-disk layout),
the generate CLI, and the Colab notebook executed top to bottom."""
import json
import os
import shutil
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
import torch

from magnet_jax import hub
from magnet_jax.pipeline import MagnetPipeline
from tests.helpers import ROOT, run_tool, tiny_50hz_codec


@pytest.fixture(scope="module")
def tiny():
    return MagnetPipeline.from_config("tiny", seed=0)


def test_generate_shapes_and_determinism(tiny):
    a = tiny.generate(["calm piano", "happy rock with drums"], duration=1.0, seed=1)
    b = tiny.generate(["calm piano", "happy rock with drums"], duration=1.0, seed=1)
    c = tiny.generate(["calm piano", "happy rock with drums"], duration=1.0, seed=2)
    assert a.shape == (2, 1, tiny.sample_rate) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_continuation_keeps_prompt_codes_and_infill_keeps_context(tiny):
    codes = tiny.generate_codes(["jazz"], duration=1.0, seed=3)
    assert codes.shape == (1, 4, 50) and int(codes.max()) < tiny.lm.config.card
    cont = tiny.generate_codes(["jazz"], duration=1.6, seed=4, prompt=codes[..., :20])
    np.testing.assert_array_equal(np.asarray(cont[..., :20]), np.asarray(codes[..., :20]))
    assert cont.shape[-1] == 80
    wav = tiny.decode_codes(codes)[0]
    filled = tiny.infill(wav, tiny.sample_rate, ["drums"], start=0.4, end=0.6, seed=5)
    assert filled.shape[-1] == wav.shape[-1]
    src = np.asarray(tiny.encode_audio(wav, tiny.sample_rate))
    init = jnp.asarray(src)
    region = jnp.zeros((1, 50), bool).at[:, 20:30].set(True)
    out = np.asarray(tiny.generate_codes(["drums"], seed=5, init_codes=init, infill_mask=region, num_samples=1))
    keep = ~np.asarray(region)[0]
    np.testing.assert_array_equal(out[..., keep], src[..., keep])


def test_long_form_windows_continue_each_other(tiny):
    window = tiny.lm.config.segment_frames                     # 100 frames (2 s)
    codes = np.asarray(tiny.generate_codes(["ambient synth"], duration=5.0, seed=6))
    assert codes.shape == (1, 4, 250) and (codes < tiny.lm.config.card).all()
    with pytest.raises(ValueError, match="beyond the model"):
        tiny.generate_codes(["x"], duration=5.0, long_form=False)
    assert window == 100


def test_unconditional_and_bad_inputs(tiny):
    u = tiny.generate(None, duration=0.5, num_samples=2, seed=0)
    assert u.shape == (2, 1, tiny.sample_rate // 2)
    with pytest.raises(ValueError, match="no text"):
        tiny.generate([], duration=0.5)
    with pytest.raises(ValueError, match="duration"):
        tiny.generate(["x"], duration=0)
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode_audio(np.full((1, 100), np.nan), 32000)
    with pytest.raises(ValueError, match="not inside"):
        tiny.infill(np.zeros((1, 32000), np.float32), 32000, ["x"], start=0.5, end=3.0)


@pytest.fixture(scope="module")
def released_folder(tmp_path_factory):
    """A folder in the released layout: state_dict.bin (audiocraft LM, T5-base width),
    compression_state_dict.bin ({'pretrained': <codec>}, as the music repos ship), plus a local T5."""
    from tests.reference import magnet_ref as R
    import transformers
    base = tmp_path_factory.mktemp("released")
    folder = base / "magnet-small-10secs"
    R.make_checkpoint(folder, R.magnet_xp_cfg(dim=64, num_heads=4, num_layers=2, segment_duration=2), seed=2)
    codec = tiny_50hz_codec(base / "encodec")
    torch.save({"pretrained": str(codec), "exported": True, "version": "1.3.0"},
               folder / "compression_state_dict.bin")
    t5 = base / "t5"
    tok_files = ROOT / "magnet_jax" / "text" / "assets" / "tiny_t5_tokenizer"
    vocab = len(json.loads((tok_files / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(transformers.T5Config(vocab_size=vocab, d_model=768, d_kv=32, d_ff=256,
                                                              num_layers=1, num_heads=4)).eval()
    model.save_pretrained(str(t5))
    for f in tok_files.iterdir():
        shutil.copy(f, t5 / f.name)
    return folder, t5


def test_from_pretrained_local_release_layout(released_folder, tmp_path, monkeypatch):
    folder, t5 = released_folder
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    pipe = MagnetPipeline.from_pretrained(str(folder), t5=str(t5))
    assert pipe.sample_rate == 8000 and pipe.window_seconds == 2.0
    assert pipe.generation.decoding_steps == (4, 10, 10, 10) and pipe.generation.top_p == 0.9   # 20 x 2 s // 10
    wav = pipe.generate(["calm piano", None], duration=0.6, seed=0, decoding_steps=(4, 2, 2, 2))
    assert wav.shape == (2, 1, 4800) and np.isfinite(wav).all() and np.abs(wav).max() > 0
    assert list((tmp_path / "cache" / "lm").glob("*/magnet_jax_lm.safetensors"))   # converted once, cached


def test_from_pretrained_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(hub.HubError, match="unknown model"):
        MagnetPipeline.from_pretrained("facebook/musicgen-small")
    with pytest.raises(hub.HubError, match="local folder"):
        MagnetPipeline.from_pretrained("facebook/magnet-small-10secs")


def test_generate_cli(tmp_path):
    out = tmp_path / "out"
    p = run_tool(["tools/generate.py", "--model=config:tiny", "--text=calm piano", "--text=happy rock",
                  "--duration=1", f"--out_dir={out}", "--decoding_steps=4,2,2,2", "--span_arrangement=stride1"])
    wavs, pngs = sorted(out.glob("*.wav")), sorted(out.glob("*.png"))
    assert [w.stem for w in wavs] == ["000_calm_piano", "001_happy_rock"] and len(pngs) == 2
    data, sr = sf.read(wavs[0])
    assert sr == 32000 and len(data) == 32000
    assert "wrote" in p.stdout and str(pngs[0]) in p.stdout
    # continuation and infill from a WAV on disk
    run_tool(["tools/generate.py", "--model=config:tiny", "--text=jazz", f"--prompt_wav={wavs[0]}",
              "--duration=1.5", f"--out_dir={tmp_path / 'cont'}", "--decoding_steps=4,2,2,2"])
    assert sf.info(str(next((tmp_path / "cont").glob("*.wav")))).duration == pytest.approx(1.5)
    run_tool(["tools/generate.py", "--model=config:tiny", "--text=drums", f"--infill_wav={wavs[1]}",
              "--infill_start=0.2", "--infill_end=0.5", f"--out_dir={tmp_path / 'fill'}", "--decoding_steps=4,2,2,2"])
    assert sf.info(str(next((tmp_path / "fill").glob("*.wav")))).duration == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("args,message", [
    (["--model=config:tiny", "--text= "], "empty --text"),
    (["--model=config:tiny"], "no text"),
    (["--model=config:nope", "--text=x"], "unknown config"),
    (["--model=facebook/magnet-small-10secs", "--text=x"], "local folder"),
    (["--model=config:tiny", "--text=x", "--infill_start=1"], "infill needs"),
])
def test_generate_cli_errors(tmp_path, args, message):
    p = run_tool(["tools/generate.py", *args, f"--out_dir={tmp_path}"], check=False,
                 env_extra={"HF_HOME": str(tmp_path / "hf")})
    assert p.returncode != 0 and message in (p.stderr + p.stdout), p.stderr[-2000:]


def test_offline_fallback_says_so(tmp_path):
    p = run_tool(["tools/generate.py", "--model=facebook/magnet-small-10secs", "--offline_fallback=config:tiny",
                  "--text=lofi beat", "--duration=0.5", f"--out_dir={tmp_path}", "--decoding_steps=2,1,1,1"],
                 env_extra={"HF_HOME": str(tmp_path / "hf")})
    assert "RANDOM-INIT" in p.stdout and len(list(tmp_path.glob("*.wav"))) == 1


def test_colab_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    import nbclient
    import nbformat
    nb = nbformat.read(ROOT / "colab" / "magnet_demo.ipynb", as_version=4)
    monkeypatch.setenv("MAGNET_DEMO_MODEL", "config:tiny")
    monkeypatch.setenv("MAGNET_DEMO_DURATION", "1")
    monkeypatch.setenv("MAGNET_DEMO_LONG", "3")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(html) >= 5 and len(images) >= 4           # audio players and spectrograms
