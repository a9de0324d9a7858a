"""The real torchaudio (Python code: transforms, functional) for audiocraft's losses and MS-STFT
discriminator, on a machine whose torch is newer than any torchaudio wheel.

``pip install --no-deps torchaudio==2.11.1`` (tools/install.sh --tests) brings torchaudio's Python
package; its compiled ``_torchaudio.so`` is built against another torch and fails to load, which
makes ``import torchaudio`` raise. The transforms audiocraft uses (``Spectrogram``,
``MelSpectrogram``) are pure PyTorch (``torch.stft`` + ``melscale_fbanks``), so :func:`load`
imports torchaudio with its extension marked unavailable (as torchaudio does itself when the
library file is absent) and rebinds it in audiocraft modules that were imported with the
``tests.reference.shim`` placeholder.
"""
from __future__ import annotations

import importlib
import sys
import types


def _drop():
    for k in list(sys.modules):
        if k == "torchaudio" or k.startswith("torchaudio."):
            del sys.modules[k]


def load():
    import tests.reference.shim as shim
    for f in sys.meta_path:
        if isinstance(f, shim._Finder):
            f.roots.discard("torchaudio")
    mod = sys.modules.get("torchaudio")
    if mod is None or isinstance(mod, shim._PlaceholderModule) or not hasattr(mod, "transforms"):
        _drop()
        try:
            mod = importlib.import_module("torchaudio")
        except OSError:
            _drop()
            ext = types.ModuleType("torchaudio._extension")
            ext._IS_TORCHAUDIO_EXT_AVAILABLE = False
            ext._IS_ALIGN_AVAILABLE = False
            ext.fail_if_no_align = lambda f: f
            ext._check_cuda_version = lambda: None
            sys.modules["torchaudio._extension"] = ext
            mod = importlib.import_module("torchaudio")
    import torchaudio.transforms  # noqa: F401
    spec = sys.modules.get("audiocraft.losses.specloss")
    if spec is not None:
        spec.MelSpectrogram = mod.transforms.MelSpectrogram
    stftd = sys.modules.get("audiocraft.adversarial.discriminators.msstftd")
    if stftd is not None:
        stftd.torchaudio = mod
    return mod
