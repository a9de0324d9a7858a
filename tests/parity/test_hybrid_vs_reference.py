"""Hybrid-MAGNeT checkpoints in the layout of the audiocraft ``hybrid_magnet`` branch (random weights, written by
audiocraft 1.3.0's builder + the released exporter, tests/reference/hybrid_ref): the loader's facts, logits equal
to the branch's ``compute_predictions`` run on audiocraft (delay pattern + semi-AR mask), a round trip of our own
weights, one-line refusals, and ``MagnetPipeline.from_pretrained`` -> ``generate``."""
import copy
import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import yaml
from flax import nnx

from magnet_jax.convert import CheckpointError, load_audiocraft_checkpoint, to_audiocraft_state_dict
from magnet_jax.model.hybrid import HybridMagnetConfig, HybridMagnetLM
from tests.helpers import ROOT, tiny_50hz_codec
from tests.reference import hybrid_ref as H
from tests.reference import magnet_ref as R


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hybrid")
    xp = H.hybrid_xp_cfg(dim=32, num_heads=2, num_layers=2, segment_duration=1)
    return folder, xp, H.make_checkpoint(folder, xp, seed=1)


def _inputs(seed=0, B=4, T=50):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2049, (B, 4, T), generator=g)                   # mask ids (2048) included
    th = torch.randn(B, 5, 768, generator=g)
    tm = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]][:B])
    return codes, th, tm


def _ours(lm, codes, th, tm, P, st):
    return np.asarray(lm(jnp.asarray(codes.numpy()), jnp.asarray(th.numpy()), jnp.asarray(tm.numpy()),
                         jnp.asarray(P), jnp.asarray(st)))


def test_loader_reads_the_branch_layout(ckpt):
    folder, _, _ = ckpt
    ck = load_audiocraft_checkpoint(folder, cache=False)
    assert isinstance(ck.lm, HybridMagnetLM) and ck.lm_model == "hybrid_magnet"
    assert (ck.kind, ck.t5_name, ck.segment_duration) == ("music", "t5-base", 1.0)
    c = ck.lm.config
    assert (c.dim, c.num_layers, c.delays, c.subcodes_context, c.span_len, c.segment_frames) == \
        (32, 2, (0, 1, 2, 3), 5, 3, 50)


@pytest.mark.parametrize("P,st", [([0, 10, 30, 49], [0, 2, 3, 1]), ([5, 1, 20, 3], [1, 0, 0, 3])])
def test_logits_match_the_branch_forward_on_audiocraft(ckpt, P, st):
    folder, _, ref = ckpt
    lm = load_audiocraft_checkpoint(folder, cache=False).lm
    codes, th, tm = _inputs()
    want = H.reference_frame_logits(ref, codes, th, tm, P, st).numpy()
    assert np.isfinite(want).all()
    np.testing.assert_allclose(_ours(lm, codes, th, tm, P, st), want, atol=1e-4, rtol=0)


def test_float16_checkpoint_and_cache(ckpt, tmp_path, monkeypatch):
    _, xp, ref = ckpt
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    R.save_released(tmp_path / "half", ref, xp, half=True)
    first = load_audiocraft_checkpoint(tmp_path / "half")
    again = load_audiocraft_checkpoint(tmp_path / "half")                    # from the safetensors cache
    assert isinstance(again.lm, HybridMagnetLM) and again.lm_model == "hybrid_magnet"
    codes, th, tm = _inputs(1, B=2)
    np.testing.assert_array_equal(_ours(first.lm, codes, th, tm, [7, 0], [1, 2]),
                                  _ours(again.lm, codes, th, tm, [7, 0], [1, 2]))


def test_round_trip_of_our_weights(ckpt, tmp_path):
    _, xp, _ = ckpt
    mine = HybridMagnetLM(HybridMagnetConfig(dim=32, num_heads=2, num_layers=2, text_dim=768, segment_duration=1.0),
                          rngs=nnx.Rngs(7))
    sd = {k: torch.from_numpy(v) for k, v in to_audiocraft_state_dict(mine).items()}
    tmp_path.mkdir(exist_ok=True)
    torch.save({"best_state": sd, "xp.cfg": yaml.safe_dump(xp), "version": "1.3.0", "exported": True},
               tmp_path / "state_dict.bin")
    back = load_audiocraft_checkpoint(tmp_path, cache=False).lm
    codes, th, tm = _inputs(2)
    P, st = [3, 40, 0, 12], [3, 1, 0, 2]
    np.testing.assert_array_equal(_ours(back, codes, th, tm, P, st), _ours(mine, codes, th, tm, P, st))
    ref = H.build_reference(xp)                        # and audiocraft runs our weights to the same logits
    ref.load_state_dict(sd)
    np.testing.assert_allclose(H.reference_frame_logits(ref, codes, th, tm, P, st).numpy(),
                               _ours(mine, codes, th, tm, P, st), atol=1e-4, rtol=0)


def _variant(tmp_path, ckpt, edit):
    folder, xp, _ = ckpt
    xp = copy.deepcopy(xp)
    edit(xp)
    pkg = torch.load(folder / "state_dict.bin", weights_only=True)
    pkg["xp.cfg"] = yaml.safe_dump(xp)
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.save(pkg, tmp_path / "state_dict.bin")
    return tmp_path


@pytest.mark.parametrize("edit,msg", [
    (lambda x: x["codebooks_pattern"]["delay"].update(delays=[0, 0, 1, 1]), "unsupported Hybrid-MAGNeT delays"),
    (lambda x: x["codebooks_pattern"].update(modeling="parallel"), "modeling='parallel'"),
    (lambda x: x["codebooks_pattern"]["delay"].update(flatten_first=1), "flatten_first"),
    (lambda x: x["transformer_lm"].update(causal=True), "causal=true"),
    (lambda x: x["transformer_lm"].update(bias_ff=True), "transformer_lm.bias_ff"),
    (lambda x: x["dataset"].pop("segment_duration"), "no dataset.segment_duration"),
])
def test_unexpected_files_are_refused_in_one_line(ckpt, tmp_path, edit, msg):
    folder = _variant(tmp_path / "v", ckpt, edit)
    with pytest.raises(CheckpointError, match=msg) as e:
        load_audiocraft_checkpoint(folder, cache=False)
    assert "\n" not in str(e.value)


def test_from_pretrained_gives_a_hybrid_pipeline(ckpt, tmp_path, monkeypatch):
    import transformers

    from magnet_jax.pipelines.hybrid import HybridMagnetPipeline
    from magnet_jax.pipelines.magnet import MagnetPipeline
    folder, _, _ = ckpt
    repo = tmp_path / "hybrid-magnet-small"
    repo.mkdir()
    shutil.copy(folder / "state_dict.bin", repo / "state_dict.bin")
    codec = tiny_50hz_codec(tmp_path / "encodec")
    torch.save({"pretrained": str(codec), "exported": True, "version": "1.3.0"}, repo / "compression_state_dict.bin")
    t5 = tmp_path / "t5"
    tok_files = ROOT / "magnet_jax" / "text" / "assets" / "tiny_t5_tokenizer"
    vocab = len(json.loads((tok_files / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(0)
    transformers.T5EncoderModel(transformers.T5Config(vocab_size=vocab, d_model=768, d_kv=32, d_ff=256, num_layers=1,
                                                      num_heads=4)).eval().save_pretrained(str(t5))
    for f in tok_files.iterdir():
        shutil.copy(f, t5 / f.name)
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    pipe = MagnetPipeline.from_pretrained(str(repo), t5=str(t5))
    assert isinstance(pipe, HybridMagnetPipeline) and isinstance(pipe.lm, HybridMagnetLM)
    codes = np.asarray(pipe.generate_codes(["calm piano", None], duration=0.6, prefix_seconds=0.2, seed=0,
                                           decoding_steps=(3, 2, 2, 2)))
    assert codes.shape == (2, 4, 30) and (codes < 2048).all()
    wav = pipe.generate("calm piano", duration=0.6, prefix_seconds=0.2, decoding_steps=(3, 2, 2, 2))
    assert wav.shape == (1, 1, 4800) and np.isfinite(wav).all()
