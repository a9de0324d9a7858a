"""MagnetPipeline loaded from the released on-disk layout (random weights) against audiocraft's own ``MAGNeT``
wrapper on the same checkpoint: identical greedy codes for a whole window (the LM never runs beyond it)."""
import json
import shutil

import numpy as np
import pytest
import torch

from magnet_jax import hub
from magnet_jax.pipelines.magnet import MagnetPipeline
from tests.helpers import ROOT, tiny_50hz_codec

STEPS = (4, 2, 2, 2)


@pytest.fixture(scope="module")
def released_folder(tmp_path_factory):
    """A folder in the released layout: state_dict.bin (audiocraft LM, T5-base width, 2 s window),
    compression_state_dict.bin ({'pretrained': <codec>}, as the music repos ship), plus a local T5."""
    import transformers

    from tests.reference import magnet_ref as R
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


@pytest.fixture(scope="module")
def pipe(released_folder, tmp_path_factory):
    folder, t5 = released_folder
    mp = pytest.MonkeyPatch()
    mp.setenv("MAGNET_JAX_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield MagnetPipeline.from_pretrained(str(folder), t5=str(t5))
    mp.undo()


def test_from_pretrained_local_release_layout(pipe):
    assert pipe.sample_rate == 8000 and pipe.window_seconds == 2.0
    assert pipe.generation.decoding_steps == (4, 10, 10, 10) and pipe.generation.top_p == 0.9   # 20 x 2 s // 10
    wav = pipe.generate(["calm piano", None], duration=0.6, seed=0, decoding_steps=STEPS)
    assert wav.shape == (2, 1, 4800) and np.isfinite(wav).all() and np.abs(wav).max() > 0
    assert list(hub.cache_dir("lm").glob("*/magnet_jax_lm.safetensors"))   # converted once, cached


@pytest.mark.parametrize("arrangement,frames", [("nonoverlap", 99), ("stride1", 100)])
def test_window_generation_matches_audiocraft_magnet(pipe, released_folder, arrangement, frames):
    """``MagnetPipeline.generate(duration=window)`` greedy == audiocraft ``MAGNeT.generate`` (100 -> 99 frames
    with nonoverlap spans of 3, as 500 -> 498 for the 10 s models)."""
    import transformers
    from audiocraft.models import MAGNeT
    from audiocraft.models.encodec import HFEncodecCompressionModel

    from tests.reference import magnet_ref as R
    from tests.reference.magnet_generate_ref import patch_conditions
    folder, _ = released_folder
    texts = ["calm piano", "happy rock with drums"]
    ours = np.asarray(pipe.generate_codes(texts, duration=pipe.window_seconds, use_sampling=False,
                                          decoding_steps=STEPS, span_arrangement=arrangement))
    wav = pipe.generate(texts, duration=pipe.window_seconds, use_sampling=False, decoding_steps=STEPS,
                        span_arrangement=arrangement)

    # audiocraft reads a local 'pretrained' path as its own export: build the HF codec it names directly
    codec = torch.load(folder / "compression_state_dict.bin", weights_only=True)["pretrained"]
    compression = HFEncodecCompressionModel(transformers.EncodecModel.from_pretrained(codec)).eval()
    ref = MAGNeT(name="random-weights", compression_model=compression, lm=R.load_reference(folder))
    ref.set_generation_params(use_sampling=False, decoding_steps=list(STEPS), span_arrangement=arrangement)
    hidden, mask = pipe.encode_text(texts)          # the same T5 states on both sides (the T5 stand-in)
    patch_conditions(ref.lm, np.asarray(hidden), np.asarray(mask))
    ref_wav, ref_codes = ref.generate(texts, return_tokens=True)
    assert ref_codes.shape == ours.shape == (2, 4, frames)
    np.testing.assert_array_equal(ours, ref_codes.numpy())
    assert wav.shape == tuple(ref_wav.shape)
    np.testing.assert_allclose(wav, ref_wav.numpy(), atol=1e-4)
