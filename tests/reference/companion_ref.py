"""A MAGNeT and a MusicGen checkpoint in the released on-disk layout (random weights, audiocraft's builders)
sharing one random 50 Hz codec, plus a local T5 folder: the companion-model (rescoring / hybrid) fixtures."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.reference import magnet_ref as M
from tests.reference import musicgen_ref as G

import torch  # noqa: E402  (after the reference shim, as the builders)

from tests.helpers import ROOT, tiny_50hz_codec  # noqa: E402


def local_t5(folder: Path, width: int = 768) -> Path:
    """A random transformers T5 encoder of ``width`` with the packaged tiny tokenizer."""
    import transformers
    tok_files = ROOT / "magnet_jax" / "text" / "assets" / "tiny_t5_tokenizer"
    vocab = len(json.loads((tok_files / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(transformers.T5Config(vocab_size=vocab, d_model=width, d_kv=32, d_ff=256,
                                                              num_layers=1, num_heads=4)).eval()
    model.save_pretrained(str(folder))
    for f in tok_files.iterdir():
        shutil.copy(f, folder / f.name)
    return folder


def _codec_pointer(folder: Path, codec: Path) -> None:
    torch.save({"pretrained": str(codec), "exported": True, "version": "1.3.0"},
               folder / "compression_state_dict.bin")


def released_pair(base: Path, *, musicgen_card: int = 2048, window: int = 2):
    """-> (magnet folder, musicgen folder, t5 folder, reference MAGNeT, reference MusicGen); both checkpoints
    name T5-base (width 768) and point at the same codec folder from their own folders."""
    base = Path(base)
    codec = tiny_50hz_codec(base / "encodec")
    magnet, musicgen = base / "magnet", base / "musicgen"
    ref_m = M.make_checkpoint(magnet, M.magnet_xp_cfg(dim=64, num_heads=4, num_layers=2, segment_duration=window),
                              seed=2)
    ref_g = G.make_checkpoint(musicgen, G.musicgen_xp_cfg(dim=32, num_heads=2, num_layers=2, card=musicgen_card,
                                                          segment_duration=window), seed=3)
    for f in (magnet, musicgen):
        _codec_pointer(f, codec)
    return magnet, musicgen, local_t5(base / "t5"), ref_m, ref_g
