"""Reference audiocraft MusicGen-melody LMs (``LMModel`` + ``ChromaStemConditioner`` ``self_wav``) with random
weights, in the released layout, and their logits / greedy generate on given text states and melodies.

demucs is not installed here, and audiocraft's ``ChromaStemConditioner`` loads ``htdemucs`` in its constructor
and runs it in ``_get_stemmed_wav``. For the TESTS ONLY: :func:`fake_demucs` provides a ``demucs.pretrained``
whose model only lists the sources, and ``_get_stemmed_wav`` is replaced by the identity (the melody is given
mono at the conditioner's sample rate, so the reference's ``convert_audio`` would be the identity too). Every
other step is audiocraft's own code: ``ChromaExtractor`` (torchaudio's ``Spectrogram``, librosa's filterbank,
argmax), ``match_len_on_eval``, ``output_proj``, the provider's wav collation, CFG nullification and the
fuser's ``prepend``.
"""
from __future__ import annotations

import contextlib
import sys
import types

from tests.reference import shim

shim.install()   # before audiocraft

import torch  # noqa: E402
from audiocraft.modules import chroma as ac_chroma  # noqa: E402
from audiocraft.modules import conditioners as C  # noqa: E402

from tests.reference import magnet_ref as M  # noqa: E402
from tests.reference import musicgen_ref as R  # noqa: E402
from tests.reference import torchaudio_py  # noqa: E402
from tests.reference.magnet_generate_ref import _as_torch  # noqa: E402


class _FakeDemucs:
    sources = ["drums", "bass", "other", "vocals"]
    samplerate, audio_channels = 44100, 2

    def to(self, device):
        return self


@contextlib.contextmanager
def fake_demucs():
    """A ``demucs`` package for the conditioner's constructor, removed afterwards (tests only)."""
    saved = {k: sys.modules[k] for k in list(sys.modules) if k == "demucs" or k.startswith("demucs.")}
    pkg, pre = types.ModuleType("demucs"), types.ModuleType("demucs.pretrained")
    pre.get_model = lambda name: _FakeDemucs()
    pkg.pretrained, pkg.__path__ = pre, []
    sys.modules.update({"demucs": pkg, "demucs.pretrained": pre})
    try:
        yield
    finally:
        for k in ("demucs", "demucs.pretrained"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)


def _patch():
    ac_chroma.torchaudio = torchaudio_py.load()                       # the real Spectrogram
    C.ChromaStemConditioner._get_stemmed_wav = lambda self, wav, sample_rate: wav   # TEST ONLY: no demucs


def melody_xp_cfg(text_fuse="prepend", radix2_exp=14, argmax=True, **kw) -> dict:
    """The released MusicGen-melody ``xp.cfg`` (conditioner ``chroma2music``) at small dims."""
    xp = R.musicgen_xp_cfg(**kw)
    xp["conditioners"]["self_wav"] = {"model": "chroma_stem", "chroma_stem": {
        "sample_rate": "${sample_rate}", "n_chroma": 12, "radix2_exp": radix2_exp, "argmax": argmax,
        "match_len_on_eval": True, "eval_wavs": None, "n_eval_wavs": 100, "cache_path": None}}
    xp["fuser"]["prepend"] = ["self_wav", "description"] if text_fuse == "prepend" else ["self_wav"]
    xp["fuser"]["cross"] = [] if text_fuse == "prepend" else ["description"]
    xp["attribute_dropout"] = {"args": {"active_on_eval": False}, "text": {}, "wav": {"self_wav": 0.5}}
    return xp


def make_checkpoint(folder, xp_cfg: dict, seed: int = 0):
    _patch()
    with fake_demucs():
        lm = R.build_reference(xp_cfg, seed)
    M.save_released(folder, lm, xp_cfg)
    return lm


def load_reference(folder):
    _patch()
    with fake_demucs():
        return R.load_reference(folder)


def _wav_condition(wav, sample_rate):
    w = _as_torch(wav, torch.float32)                                   # [C, N]
    return C.WavCondition(w[None], torch.tensor([w.shape[-1]]), sample_rate=[sample_rate], path=[None],
                          seek_time=[None])


def reference_chroma(lm, wavs, sample_rate):
    """The conditioner's chroma (``_get_wav_embedding``: extraction + match_len_on_eval) of mono ``wavs [B, N]``."""
    cond = lm.condition_provider.conditioners["self_wav"]
    w = _as_torch(wavs, torch.float32)
    x = C.WavCondition(w[:, None], torch.tensor([w.shape[-1]] * w.shape[0]), [sample_rate] * w.shape[0],
                       [None] * w.shape[0], [None] * w.shape[0])
    with torch.no_grad():
        return cond._get_wav_embedding(x).numpy()


def reference_logits(lm, sequence, text_hidden, text_mask, melodies, sample_rate):
    """``LMModel.forward`` with the real description + self_wav conditioners (``melodies``: list of [C, N])."""
    provider = lm.condition_provider
    wavs = provider._collate_wavs([C.ConditioningAttributes(wav={"self_wav": _wav_condition(m, sample_rate)})
                                   for m in melodies])
    with R.torch_backend(), torch.no_grad():
        conds = {"description": M.condition_tensors(lm, text_hidden, text_mask)["description"],
                 "self_wav": provider.conditioners["self_wav"](provider.conditioners["self_wav"].tokenize(
                     wavs["self_wav"]))}
        return lm(_as_torch(sequence, torch.long), [], conds).numpy()


def reference_generate(lm, text_hidden, text_mask, melodies, sample_rate, *, num_frames, cfg_coef=3.0):
    """Unmodified ``LMModel.generate`` (greedy, CFG as one 2B batch) with the melody attributes that
    ``MusicGen._prepare_tokens_and_attributes`` builds (``None``: no melody); the T5 states are the given ones."""
    h, m = _as_torch(text_hidden, torch.float32), _as_torch(text_mask, torch.long)
    mask2 = torch.cat([m, torch.zeros_like(m)])
    provider = lm.condition_provider
    provider.conditioners["description"].__dict__["t5"].hidden = torch.cat([h, torch.zeros_like(h)])

    def tokenize(inputs):   # the T5 part fixed; the wav part is the provider's own collation + tokenize
        wav = provider.conditioners["self_wav"].tokenize(provider._collate_wavs(inputs)["self_wav"])
        return {"description": {"input_ids": torch.zeros(mask2.shape, dtype=torch.long), "attention_mask": mask2},
                "self_wav": wav}

    provider.tokenize = tokenize
    attrs = []
    for i, mel in enumerate(melodies):
        a = C.ConditioningAttributes(text={"description": f"item {i}"})
        a.wav["self_wav"] = (C.WavCondition(torch.zeros((1, 1, 1)), torch.tensor([0]), sample_rate=[sample_rate],
                                            path=[None]) if mel is None else _wav_condition(mel, sample_rate))
        attrs.append(a)
    try:
        with R.torch_backend(), torch.no_grad():
            out = lm.generate(prompt=None, conditions=attrs, max_gen_len=num_frames, use_sampling=False,
                              cfg_coef=cfg_coef)
    finally:
        del provider.tokenize
    return out.numpy()
