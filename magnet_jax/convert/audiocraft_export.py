"""magnet-jax LMs -> audiocraft's released layout (the inverse of :mod:`magnet_jax.convert.audiocraft`).

A folder with ``state_dict.bin`` = ``{'best_state': <LM state_dict>, 'xp.cfg': <YAML>, 'version': '1.3.0',
'exported': True}`` (what audiocraft's ``utils.export.export_lm`` writes, float32 tensors) and, for the codec,
``compression_state_dict.bin``. audiocraft 1.3.0 reads it with ``MAGNeT.get_pretrained(DIR)`` /
``MusicGen.get_pretrained(DIR)`` (``loaders.load_lm_model_magnet`` / ``load_lm_model`` +
``load_compression_model``), and :func:`magnet_jax.convert.load_audiocraft_checkpoint` reads it back. Written
without torch (:func:`magnet_jax.convert._torch_write.save_torch_file`).

The ``xp.cfg`` comes from the family's writer (``xp_cfg_from_config`` next to each reader: MAGNeT, MusicGen,
Hybrid-MAGNeT in the layout of audiocraft's ``hybrid_magnet`` branch, which audiocraft 1.3.0 loads as a
``MagnetLMModel`` with the delay pattern); MusicGen-melody is refused by name. The codec (:func:`write_codec`):

* a hub repo id (``facebook/encodec_32khz``): a reference, ``{'pretrained': ID}``, as audiocraft's
  ``export_pretrained_compression_model`` writes and the released MAGNeT repos ship (audiocraft downloads it);
* a local EnCodec (a transformers / audiocraft export, ``tools/export_codec.py``): its weights, in audiocraft's
  ``compression_state_dict.bin`` (:func:`magnet_jax.convert.encodec_export.export_codec`); an audiocraft file is
  copied as it is;
* the magnet-jax frame codec: refused (audiocraft has no such model): name a released EnCodec, or ``none``;
* ``none``: the LM only (``loaders.load_lm_model`` reads it; ``get_pretrained`` needs a codec).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import yaml

from magnet_jax import hub
from magnet_jax.convert import hybrid, magnet, musicgen
from magnet_jax.convert._torch import TorchFileError, load_torch_file
from magnet_jax.convert._torch_write import save_torch_file
from magnet_jax.convert.audiocraft_xp import AUDIOCRAFT_VERSION, PRETRAINED_PREFIX, ExportFacts
from magnet_jax.convert.checkpoint import CheckpointError
from magnet_jax.convert.lm_params import to_audiocraft_state_dict
from magnet_jax.model.config import LMConfig
from magnet_jax.model.families import family_of
from magnet_jax.model.transformer import TransformerLM

LM_FILE = "state_dict.bin"
CODEC_FILE = "compression_state_dict.bin"
NO_CODEC = "none"
# the family's lm_model -> its xp.cfg writer (cfg, facts) -> dict
WRITERS = {
    magnet.LM_MODEL: magnet.xp_cfg_from_config,
    hybrid.HYBRID_LM_MODEL: hybrid.xp_cfg_from_config,
    musicgen.LM_MODEL: musicgen.xp_cfg_from_config,      # refuses MusicGen-melody by name
}


def xp_cfg_for(cfg: LMConfig, facts: ExportFacts) -> dict:
    """The audiocraft ``xp.cfg`` (a dict) of a model config of any family."""
    return WRITERS[family_of(cfg).lm_model](cfg, facts)


def lm_package(lm: TransformerLM, facts: ExportFacts) -> dict:
    """What ``state_dict.bin`` holds: audiocraft's exported LM package (numpy float32 tensors)."""
    xp = xp_cfg_for(lm.config, facts)
    return {"best_state": to_audiocraft_state_dict(lm), "xp.cfg": yaml.safe_dump(xp, sort_keys=False),
            "version": AUDIOCRAFT_VERSION, "exported": True}


def _save(pkg: dict, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    save_torch_file(pkg, tmp)
    os.replace(tmp, path)
    return path


def save_audiocraft_lm(lm: TransformerLM, folder: str | os.PathLike, facts: ExportFacts) -> Path:
    """Writes ``folder/state_dict.bin``; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return _save(lm_package(lm, facts), folder / LM_FILE)


@dataclasses.dataclass(frozen=True)
class WrittenCodec:
    compression: str             # the xp.cfg's compression_model_checkpoint
    sample_rate: int | None      # the codec's, when it was read here (None: a hub reference)
    path: Path | None            # the compression_state_dict.bin written (None: none)


def _check_fits(codec, cfg: LMConfig, channels: int, source: str) -> None:
    have = (int(codec.num_codebooks) * channels, int(codec.cardinality), float(codec.frame_rate))
    want = (cfg.n_q, cfg.card, float(cfg.frame_rate))
    if have != want:
        raise CheckpointError(f"the codec {source} makes {have[0]} x {have[1]} codes at {have[2]} Hz, the LM "
                              f"models {want[0]} x {want[1]} at {want[2]} Hz: name the codec it was trained on")


def _frame_codec(what: str) -> CheckpointError:
    return CheckpointError(f"{what}, which audiocraft cannot represent (it has no such model): pass --codec=a "
                           f"released EnCodec hub id or EnCodec folder, --codec=none, or --format=magnet_jax")


def write_codec(source: str, folder: str | os.PathLike, cfg: LMConfig, *, channels: int = 1) -> WrittenCodec:
    """``folder/compression_state_dict.bin`` for the codec ``source`` (see the module docstring)."""
    from magnet_jax.codec.frame_codec import FrameCodec
    from magnet_jax.convert.encodec import load_encodec
    from magnet_jax.convert.encodec_export import export_codec

    src = str(source or "").strip()
    if src == NO_CODEC:
        return WrittenCodec("", None, None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not src:
        raise _frame_codec("the LM was trained on the bundled frame codec")
    if not hub.is_local(src):     # a hub repo: referenced, as the released MAGNeT repos do
        pkg = {"pretrained": src, "exported": True, "version": AUDIOCRAFT_VERSION}
        return WrittenCodec(PRETRAINED_PREFIX + src, None, _save(pkg, folder / CODEC_FILE))
    local = Path(src).expanduser()
    native = local / CODEC_FILE if local.is_dir() else local
    if native.is_file() and native.suffix == ".bin":
        try:
            pkg = load_torch_file(native)
        except TorchFileError as e:
            raise CheckpointError(str(e)) from None
        if "pretrained" in pkg:                  # a reference: kept as it is
            shutil.copyfile(native, folder / CODEC_FILE)
            return WrittenCodec(PRETRAINED_PREFIX + str(pkg["pretrained"]), None, folder / CODEC_FILE)
    codec = load_encodec(str(local))
    if isinstance(codec, FrameCodec):
        raise _frame_codec(f"{src} is a magnet-jax frame codec")
    _check_fits(codec, cfg, channels, src)
    if native.is_file() and native.suffix == ".bin":            # already audiocraft's layout: copied
        if native.resolve() != (folder / CODEC_FILE).resolve():
            shutil.copyfile(native, folder / CODEC_FILE)
    else:
        export_codec(codec, folder, "audiocraft")
    return WrittenCodec(str(local.resolve()), int(codec.sample_rate), folder / CODEC_FILE)


def export_audiocraft(lm: TransformerLM, folder: str | os.PathLike, facts: ExportFacts, *,
                      codec: str = NO_CODEC) -> list[Path]:
    """Writes the codec (:func:`write_codec`), then ``state_dict.bin`` whose ``xp.cfg`` names it (and its sample
    rate, when read); a ``none`` codec removes a ``compression_state_dict.bin`` left in ``folder``. Returns the
    files written."""
    folder = Path(folder)
    xp_cfg_for(lm.config, facts)        # refuses what cannot be written before any file is
    written = write_codec(codec, folder, lm.config, channels=facts.channels)
    if written.path is None:
        (folder / CODEC_FILE).unlink(missing_ok=True)
    facts = dataclasses.replace(facts, compression=written.compression or facts.compression,
                                sample_rate=written.sample_rate or facts.sample_rate)
    lm_file = save_audiocraft_lm(lm, folder, facts)
    return [p for p in (written.path, lm_file) if p is not None]
