"""Make audiocraft 1.3.0 importable on a CPU-only machine without its heavy optional dependencies.

audiocraft's package ``__init__`` imports av, torchaudio, spacy, librosa, ... although none of them
runs on the MAGNeT LM / EnCodec / T5-conditioner paths we compare against. Modules that cannot be
imported here get an empty placeholder that raises if anything in it is *called*.

``xformers.ops`` is different: audiocraft's MAGNeT loader forces the xformers attention backend
(``memory_efficient=True``), the only backend that applies the restricted-context band mask
correctly. We provide its two entry points with exact PyTorch math (softmax(q k^T / sqrt(d) + bias) v
in the BMHK layout, and ``unbind``), so audiocraft's own, unmodified code path runs.
audiocraft itself is not patched.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import math
import sys
import types

import torch

_OPTIONAL = ("av", "torchaudio", "spacy", "librosa", "torchmetrics", "demucs", "laion_clap",
             "clap_module", "gradio", "soundfile")


def _attention(q, k, v, attn_bias=None, p=0.0, scale=None):
    """xformers.ops.memory_efficient_attention semantics, layout [B, M, H, K]."""
    if attn_bias is not None and not isinstance(attn_bias, torch.Tensor):
        raise NotImplementedError("only tensor attention biases are used by MAGNeT")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    w = torch.matmul(qh * scale, kh.transpose(-1, -2))
    if attn_bias is not None:
        w = w + attn_bias
    w = torch.softmax(w, dim=-1)
    if p > 0:
        w = torch.nn.functional.dropout(w, p)
    return torch.matmul(w, vh).transpose(1, 2)


def _install_xformers():
    if "xformers.ops" in sys.modules and getattr(sys.modules["xformers.ops"], "_magnet_jax_shim", False):
        return
    pkg = types.ModuleType("xformers")
    pkg.__path__ = []
    ops = types.ModuleType("xformers.ops")
    ops.memory_efficient_attention = _attention
    ops.unbind = torch.unbind
    ops.LowerTriangularMask = type("LowerTriangularMask", (), {})
    ops._magnet_jax_shim = True
    pkg.ops = ops
    sys.modules["xformers"] = pkg
    sys.modules["xformers.ops"] = ops


class _Placeholder:
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        raise RuntimeError("a placeholder for an optional dependency of audiocraft was called")

    def __getattr__(self, name):
        return _Placeholder()


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = set(roots)
        self.placed = set()

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _PlaceholderModule(spec.name)
        mod.__path__ = []
        self.placed.add(spec.name)
        return mod

    def exec_module(self, module):
        pass


def install():
    """Idempotent. Only modules that are really missing get placeholders."""
    _install_xformers()
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    missing = []
    for name in _OPTIONAL:
        if name in sys.modules:
            continue
        try:
            ok = importlib.util.find_spec(name) is not None
            if ok:
                importlib.import_module(name)
        except Exception:  # e.g. a CUDA-only torchaudio wheel that fails to load
            ok = False
        if not ok:
            sys.modules.pop(name, None)
            missing.append(name)
    sys.meta_path.insert(0, _Finder(missing))


install()
