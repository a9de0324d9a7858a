"""Our LMs exported in audiocraft's released layout (convert/audiocraft_export): audiocraft 1.3.0's own
``MAGNeT.get_pretrained(DIR)`` / ``MusicGen.get_pretrained(DIR)`` (its loaders, strict ``load_state_dict``, the
codec from ``compression_state_dict.bin``) give our logits within 1e-4 (float32), Hybrid-MAGNeT's through
``load_lm_model_magnet`` + the branch's forward (tests/reference/hybrid_ref); our own loader reads every export
back bit-identically; what audiocraft cannot represent is refused in one line."""
# ruff: noqa: I001  (the reference shim must be imported before audiocraft)
import numpy as np
import pytest
import yaml

from tests.reference import magnet_ref as M  # noqa: F401  (the shim, before audiocraft)
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402

from magnet_jax.codec.random_init import random_encodec  # noqa: E402
from magnet_jax.convert import CheckpointError, load_audiocraft_checkpoint  # noqa: E402
from magnet_jax.convert import hybrid as hybrid_reader  # noqa: E402
from magnet_jax.convert import magnet as magnet_reader  # noqa: E402
from magnet_jax.convert import musicgen as musicgen_reader  # noqa: E402
from magnet_jax.convert.audiocraft_export import CODEC_FILE, LM_FILE, export_audiocraft, xp_cfg_for  # noqa: E402
from magnet_jax.convert.audiocraft_xp import ExportFacts  # noqa: E402
from magnet_jax.convert.checkpoint import flat_params, lm_from_flat_params  # noqa: E402
from magnet_jax.convert.encodec_export import export_codec  # noqa: E402
from magnet_jax.model import MagnetConfig, MusicGenConfig  # noqa: E402
from magnet_jax.model.families import lm_class  # noqa: E402
from magnet_jax.model.hybrid import HybridMagnetConfig  # noqa: E402
from magnet_jax.model.musicgen_melody import MusicGenMelodyConfig  # noqa: E402
from tests.reference import hybrid_ref as H  # noqa: E402
from tests.reference import musicgen_ref as G  # noqa: E402

TOL = 1e-4
CARD = 256
MODELS = {
    "magnet": (MagnetConfig(dim=32, num_heads=2, num_layers=2, card=CARD, segment_duration=1.0, subcodes_context=3,
                            text_dim=768), ExportFacts("t5-base", "music", 8000)),
    # audiocraft's rotary positions with a scaled sinusoid (transformer_lm.positional_embedding / positional_scale)
    "magnet_sin_rope": (MagnetConfig(dim=32, num_heads=2, num_layers=2, card=CARD, segment_duration=1.0,
                                     subcodes_context=3, text_dim=768, positional_embedding="sin_rope",
                                     positional_scale=0.5), ExportFacts("t5-base", "music", 8000)),
    # 30 s: MusicGen's constructor requires a window over its extend_stride (18 s)
    "musicgen": (MusicGenConfig(dim=48, num_heads=3, num_layers=2, card=CARD, segment_duration=30.0,
                                delays=(0, 1, 2, 3), text_dim=512), ExportFacts("t5-small", "music", 8000)),
    "hybrid": (HybridMagnetConfig(dim=32, num_heads=2, num_layers=2, card=CARD, segment_duration=1.0,
                                  text_dim=768), ExportFacts("t5-base", "music", 8000)),
    "audio_magnet": (MagnetConfig(dim=32, num_heads=4, num_layers=1, card=CARD, segment_duration=1.0, hidden_scale=2,
                                  text_dim=1024), ExportFacts("t5-large", "audio", 8000)),
}


def random_lm(cfg, seed=0):
    """An LM of ``cfg``'s family with every tensor random (LayerNorm scales around 1, biases nonzero)."""
    lm = lm_class(cfg)(cfg, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    flat = {}
    for k, v in flat_params(lm).items():
        if k.endswith(".scale"):
            flat[k] = (1.0 + 0.2 * rng.standard_normal(v.shape)).astype(np.float32)
        elif k.endswith("bias"):
            flat[k] = (0.2 * rng.standard_normal(v.shape)).astype(np.float32)
        else:
            flat[k] = (v + max(float(v.std()), 0.05) * rng.standard_normal(v.shape)).astype(np.float32)
    return lm_from_flat_params(cfg, flat)


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    """A random EnCodec (8 kHz, 50 Hz, 4 x CARD codes) in the transformers layout (tools/export_codec.py's)."""
    return export_codec(random_encodec(8000, 50, 4, CARD, seed=1), tmp_path_factory.mktemp("codec"), "transformers")


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request, tmp_path_factory, codec_dir):
    cfg, facts = MODELS[request.param]
    lm = random_lm(cfg, seed=len(request.param))
    out = tmp_path_factory.mktemp(request.param)
    files = export_audiocraft(lm, out, facts, codec=str(codec_dir))
    assert sorted(p.name for p in files) == [CODEC_FILE, LM_FILE]
    return request.param, lm, facts, out


def _text(B, S, E, seed):
    g = torch.Generator().manual_seed(seed)
    hidden, mask = torch.randn(B, S, E, generator=g), torch.ones(B, S, dtype=torch.long)
    mask[1, S // 2:] = 0
    return hidden, mask


def _j(*xs):
    return [jnp.asarray(x.numpy()) for x in xs]


def test_package_is_audiocraft_export_lm_layout(exported, codec_dir):
    _, lm, facts, out = exported
    pkg = torch.load(out / LM_FILE, map_location="cpu", weights_only=True)    # a torch file, written without torch
    assert set(pkg) == {"best_state", "xp.cfg", "version", "exported"} and pkg["exported"] is True
    assert pkg["version"] == "1.3.0" and all(v.dtype == torch.float32 for v in pkg["best_state"].values())
    xp = yaml.safe_load(pkg["xp.cfg"])
    assert xp["sample_rate"] == 8000 and xp["conditioners"]["description"]["t5"]["name"] == facts.t5_name
    assert xp["compression_model_checkpoint"] == str(codec_dir.resolve())


def codec_dir_of(out):
    return yaml.safe_load(torch.load(out / LM_FILE, weights_only=True)["xp.cfg"])["compression_model_checkpoint"]


def test_our_loader_reads_it_back_bit_identically(exported):
    name, lm, facts, out = exported
    ck = load_audiocraft_checkpoint(out, cache=False)
    assert type(ck.lm) is type(lm) and ck.lm.config == lm.config
    assert (ck.t5_name, ck.kind, ck.channels) == (facts.t5_name, facts.kind, 1)
    assert ck.segment_duration == lm.config.segment_duration
    want = flat_params(lm)
    got = flat_params(ck.lm)
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


# Hybrid-MAGNeT: audiocraft 1.3.0 has no generation model for it (its LM is checked by the next test)
@pytest.mark.parametrize("exported", ["audio_magnet", "magnet", "magnet_sin_rope", "musicgen"], indirect=True)
def test_audiocraft_get_pretrained_gives_our_logits(exported, capsys):
    name, lm, facts, out = exported
    M._patch_t5()
    cfg = lm.config
    hidden, mask = _text(2, 5, cfg.text_dim, seed=3)
    g = torch.Generator().manual_seed(4)
    if name == "musicgen":
        from audiocraft.models import MusicGen
        ref = MusicGen.get_pretrained(str(out), device="cpu")
        seq = torch.randint(0, CARD + 1, (2, cfg.n_q, 23), generator=g)
        want = G.reference_logits(ref.lm, seq, hidden, mask).numpy()
        errs = [np.abs(np.asarray(lm(*_j(seq, hidden, mask))) - want).max()]
    else:
        from audiocraft.models import MAGNeT
        ref = MAGNeT.get_pretrained(str(out), device="cpu")
        codes = torch.randint(0, CARD + 1, (2, cfg.n_q, 37), generator=g)     # mask id = CARD included
        errs = []
        for stage in range(cfg.n_q):
            want = M.reference_logits(ref.lm, codes, hidden, mask, stage).numpy()
            errs.append(np.abs(np.asarray(lm(*_j(codes, hidden, mask), stage=stage)) - want).max())
    assert ref.sample_rate == 8000 and ref.frame_rate == 50 and ref.lm.card == CARD
    with capsys.disabled():
        print(f"\n[export parity] {name}: max |logit diff| {max(errs):.2e}")
    assert max(errs) <= TOL, errs


@pytest.mark.parametrize("exported", ["hybrid"], indirect=True)
def test_audiocraft_loads_the_hybrid_export(exported, capsys):
    name, lm, _, out = exported
    from audiocraft.models import loaders
    M._patch_t5()
    ref = loaders.load_lm_model_magnet(str(out), compression_model_frame_rate=50, device="cpu").eval()
    g = torch.Generator().manual_seed(5)
    codes = torch.randint(0, CARD + 1, (4, 4, 50), generator=g)
    th = torch.randn(4, 5, 768, generator=g)
    tm = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    P, st = [0, 10, 30, 49], [0, 2, 3, 1]
    want = H.reference_frame_logits(ref, codes, th, tm, P, st).numpy()
    got = np.asarray(lm(*_j(codes, th, tm), jnp.asarray(P), jnp.asarray(st)))
    err = np.abs(got - want).max()
    with capsys.disabled():
        print(f"\n[export parity] hybrid: max |logit diff| {err:.2e}")
    assert err <= TOL


@pytest.mark.parametrize("family", ["magnet", "musicgen", "hybrid"])
def test_xp_cfg_reads_back_to_the_config(family):
    reader = {"magnet": magnet_reader, "musicgen": musicgen_reader, "hybrid": hybrid_reader}[family]
    cfg, facts = MODELS[family]
    for c in (cfg, cfg.replace(segment_duration=2.5, max_period=5000.0, hidden_scale=2)):
        xp = xp_cfg_for(c, facts)
        assert reader.config_from_xp_cfg(yaml.safe_dump(xp)) == c


def test_stereo_musicgen_loads_in_audiocraft(tmp_path):
    from audiocraft.models import loaders
    cfg = MusicGenConfig(dim=32, num_heads=2, num_layers=1, n_q=8, card=64, delays=(0, 0, 1, 1, 2, 2, 3, 3),
                         segment_duration=1.0, text_dim=512)
    lm = random_lm(cfg, seed=9)
    export_audiocraft(lm, tmp_path, ExportFacts("t5-small", "music", 32000, channels=2), codec="none")
    assert not (tmp_path / CODEC_FILE).exists()
    M._patch_t5()
    with G.torch_backend():
        ref = loaders.load_lm_model(str(tmp_path / LM_FILE), device="cpu").eval()
    assert ref.cfg.interleave_stereo_codebooks.use and ref.cfg.channels == 2
    hidden, mask = _text(2, 4, 512, seed=1)
    seq = torch.randint(0, 65, (2, 8, 15), generator=torch.Generator().manual_seed(1))
    want = G.reference_logits(ref, seq, hidden, mask).numpy()
    assert np.abs(np.asarray(lm(*_j(seq, hidden, mask))) - want).max() <= TOL
    assert load_audiocraft_checkpoint(tmp_path, cache=False).channels == 2


def test_hub_codec_is_referenced(tmp_path):
    from audiocraft.models import loaders
    cfg, facts = MODELS["magnet"]
    export_audiocraft(random_lm(cfg), tmp_path, facts, codec="facebook/encodec_32khz")
    pkg = loaders.load_compression_model_ckpt(str(tmp_path))
    assert pkg["pretrained"] == "facebook/encodec_32khz" and pkg["exported"]
    assert codec_dir_of(tmp_path) == "//pretrained/facebook/encodec_32khz"


def test_what_audiocraft_cannot_represent_is_refused(tmp_path, codec_dir):
    from magnet_jax.codec.frame_codec import FrameCodec, FrameCodecConfig, FrameCodecNet, save_frame_codec
    cfg, facts = MODELS["magnet"]
    lm = random_lm(cfg)
    with pytest.raises(CheckpointError, match="text encoder 'tiny'.*--format=magnet_jax"):
        export_audiocraft(lm, tmp_path / "a", ExportFacts("tiny"))
    with pytest.raises(CheckpointError, match="768-dim .* takes 512"):
        export_audiocraft(random_lm(MODELS["musicgen"][0]), tmp_path / "b", ExportFacts("t5-base"))
    melody = MusicGenMelodyConfig(dim=32, num_heads=2, num_layers=1, card=CARD, text_dim=768)
    with pytest.raises(CheckpointError, match="MusicGen-melody"):
        export_audiocraft(random_lm(melody), tmp_path / "c", facts)
    with pytest.raises(CheckpointError, match="frame codec"):
        export_audiocraft(lm, tmp_path / "d", facts, codec="")
    small_frame = FrameCodecConfig(sample_rate=8000, hop_length=160, n_fft=640, width=32, depth=2, dimension=16,
                                   total_codebooks=4, num_codebooks=4, bins=CARD, name="small")
    frame = save_frame_codec(FrameCodec(small_frame, FrameCodecNet(small_frame)), tmp_path / "frame")
    with pytest.raises(CheckpointError, match="frame codec, which audiocraft cannot represent"):
        export_audiocraft(lm, tmp_path / "e", facts, codec=str(frame))
    small = export_codec(random_encodec(8000, 50, 4, 128), tmp_path / "small", "transformers")
    with pytest.raises(CheckpointError, match="4 x 128 codes at 50.0 Hz, the LM models 4 x 256"):
        export_audiocraft(lm, tmp_path / "f", facts, codec=str(small))
    assert not any((tmp_path / d / LM_FILE).exists() for d in "abcdef")
