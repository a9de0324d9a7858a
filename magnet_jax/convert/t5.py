"""Hugging Face T5 checkpoints -> :class:`~magnet_jax.text.t5.T5Encoder` (file reading + name mapping).

Reads ``model.safetensors`` or ``pytorch_model.bin`` (torch-free), single or sharded, of ``T5EncoderModel`` /
``T5Model`` / ``T5ForConditionalGeneration``; only the encoder and the shared embedding are kept.
:func:`load_text_stack` gives the (tokenizer, encoder) pair a config or checkpoint names.
"""
from __future__ import annotations

import json
import os
from pathlib import PurePosixPath
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax import hub
from magnet_jax.convert._common import module_from_pure_dict
from magnet_jax.convert._torch import TorchFileError, load_torch_file
from magnet_jax.hub import HubError, resolve_file
from magnet_jax.text.presets import TINY_TOKENIZER, t5_hub_candidates, tiny_t5_config
from magnet_jax.text.t5 import T5Encoder, T5EncoderConfig, T5EncoderFn
from magnet_jax.text.tokenizer import load_t5_tokenizer

__all__ = ["build_t5_encoder", "load_t5_encoder", "load_text_stack", "params_from_hf", "read_hf_t5_weights",
           "resolve_t5_source"]

_SUPPORTED_MODEL_TYPES = ("t5", "mt5")


def _read_safetensors(path: str, wanted) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file whose names satisfy ``wanted(name)``, as NumPy.

    Reads lazily (only the wanted tensors, e.g. not the decoder of a seq2seq checkpoint) with
    ``safetensors``' NumPy backend; bfloat16 tensors, which NumPy cannot hold natively, go
    through its Flax backend and come back as ``ml_dtypes.bfloat16`` arrays.
    """
    from safetensors import safe_open

    out, bf16 = {}, []
    with safe_open(path, framework="np") as f:
        for name in f.keys():
            if not wanted(name):
                continue
            if f.get_slice(name).get_dtype() == "BF16":
                bf16.append(name)
            else:
                out[name] = f.get_tensor(name)
    if bf16:
        with safe_open(path, framework="flax") as f:
            for name in bf16:
                out[name] = np.asarray(f.get_tensor(name))
    return out


def _read_torch_bin(path: str, wanted) -> dict[str, np.ndarray]:
    """A ``pytorch_model.bin`` state dict, read without torch (:func:`~magnet_jax.convert._torch.load_torch_file`)."""
    try:
        sd = load_torch_file(path)
    except TorchFileError as e:
        raise HubError(str(e)) from None
    return {name: t for name, t in sd.items() if wanted(name) and isinstance(t, np.ndarray)}


def _index_shards(index_path: str) -> list[str]:
    """The shard file names of a ``*.index.json``; a name that leaves the model folder is refused."""
    try:
        with open(index_path) as fh:
            names = sorted(set(json.load(fh)["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise HubError(f"{index_path}: not a weight index ({type(e).__name__}: {e})") from None
    for name in names:   # lexical check: hub snapshots are symlinks into blobs/, so no realpath here
        p = PurePosixPath(name) if isinstance(name, str) else None
        outside = (p is None or not name or p.is_absolute() or ".." in p.parts or "\\" in name or ":" in name
                   or name.startswith("~"))
        if outside:
            raise HubError(f"{index_path}: shard {name!r} points outside the model folder; refusing to read it "
                           f"(shards must be plain file names next to the index)")
    return names


def _checkpoint_files(path_or_repo_id) -> tuple[list[str], str]:
    """The weight files of a checkpoint (single or sharded; safetensors preferred) and their kind."""
    for single, index, kind in (("model.safetensors", "model.safetensors.index.json", "safetensors"),
                                ("pytorch_model.bin", "pytorch_model.bin.index.json", "bin")):
        f = resolve_file(path_or_repo_id, single, optional=True)
        if f is not None:
            return [f], kind
        idx = resolve_file(path_or_repo_id, index, optional=True)
        if idx is not None:
            return [resolve_file(path_or_repo_id, s) for s in _index_shards(idx)], kind
    where = (f"local folder {str(path_or_repo_id)!r}" if os.path.exists(os.path.expanduser(str(path_or_repo_id)))
             else f"hub repo {str(path_or_repo_id)!r}")
    raise HubError(f"no T5 weights in {where}: expected model.safetensors or pytorch_model.bin "
                   f"(or a sharded *.index.json)")


def read_hf_t5_weights(path_or_repo_id) -> tuple[dict, dict[str, np.ndarray]]:
    """``(config.json dict, encoder tensors)`` of a Hugging Face T5 checkpoint.

    Only the encoder's tensors and the shared embedding are read (the decoder of a full
    ``T5ForConditionalGeneration`` / ``T5Model`` checkpoint such as ``t5-base`` is skipped).
    """
    cfg_path = resolve_file(path_or_repo_id, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    model_type = cfg.get("model_type")
    if model_type not in _SUPPORTED_MODEL_TYPES:
        raise HubError(f"{path_or_repo_id!r} is not a T5 checkpoint: config.json has model_type "
                       f"{model_type!r} (expected one of {_SUPPORTED_MODEL_TYPES})")
    if cfg.get("is_decoder", False):
        raise HubError(f"{path_or_repo_id!r} is a T5 *decoder* (is_decoder=true); an encoder-only "
                       f"(T5EncoderModel) or encoder-decoder (T5ForConditionalGeneration) checkpoint is needed")
    files, kind = _checkpoint_files(path_or_repo_id)

    def wanted(name):
        return not name.startswith(("decoder.", "lm_head."))

    reader = _read_safetensors if kind == "safetensors" else _read_torch_bin
    tensors: dict[str, np.ndarray] = {}
    for f in files:
        tensors.update(reader(f, wanted))
    return cfg, tensors


def params_from_hf(tensors: Mapping[str, np.ndarray], config: T5EncoderConfig, *,
                   source: str = "checkpoint") -> dict[str, np.ndarray]:
    """Map transformers' T5 tensor names to :class:`T5Encoder`'s (stacked, transposed) params.

    Accepts the keys of ``T5EncoderModel``, ``T5Model`` / ``T5ForConditionalGeneration``
    (``encoder.*`` + ``shared.weight``) and of a bare ``T5Stack`` (no ``encoder.`` prefix).
    ``encoder.embed_tokens.weight`` may be absent: it is tied to ``shared.weight``.
    """
    probe = "block.0.layer.0.SelfAttention.q.weight"
    prefix = next((p for p in ("encoder.", "") if p + probe in tensors), None)
    if prefix is None:
        if any(k.startswith("decoder.") for k in tensors) or any(".EncDecAttention." in k for k in tensors):
            raise HubError(f"{source}: only T5 decoder weights found (no 'encoder.block.*' tensors)")
        raise HubError(f"{source}: not a T5 encoder checkpoint (no '[encoder.]{probe}'; "
                       f"keys look like {sorted(tensors)[:5]})")

    def get(name):
        if name not in tensors:
            raise HubError(f"{source}: tensor {name!r} missing from the T5 checkpoint")
        return np.asarray(tensors[name])

    emb = next((tensors[k] for k in (prefix + "embed_tokens.weight", "shared.weight", "embed_tokens.weight")
                if k in tensors), None)
    if emb is None:
        raise HubError(f"{source}: no token embedding ('shared.weight' or '{prefix}embed_tokens.weight')")
    L = config.num_layers
    if prefix + f"block.{L}.layer.0.SelfAttention.q.weight" in tensors:
        raise HubError(f"{source}: checkpoint has more than num_layers={L} encoder blocks")

    def stack(fmt, transpose=True):
        arrs = [get(prefix + fmt.format(i)) for i in range(L)]
        return np.stack([a.T if transpose else a for a in arrs])

    att, ff = "block.{}.layer.0.", "block.{}.layer.1."
    p = {
        "embed_tokens": np.asarray(emb),
        "relative_attention_bias": get(prefix + "block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
        "attn_norm": stack(att + "layer_norm.weight", False),
        "q": stack(att + "SelfAttention.q.weight"),
        "k": stack(att + "SelfAttention.k.weight"),
        "v": stack(att + "SelfAttention.v.weight"),
        "o": stack(att + "SelfAttention.o.weight"),
        "ffn_norm": stack(ff + "layer_norm.weight", False),
        "wo": stack(ff + "DenseReluDense.wo.weight"),
        "final_norm": get(prefix + "final_layer_norm.weight"),
    }
    gated_key = prefix + "block.0.layer.1.DenseReluDense.wi_0.weight"
    if (gated_key in tensors) != config.is_gated:
        raise HubError(f"{source}: config.json says feed_forward_proj={config.feed_forward_proj!r} but the "
                       f"weights are {'gated (wi_0/wi_1)' if gated_key in tensors else 'not gated (wi)'}")
    if config.is_gated:
        p["wi_0"] = stack(ff + "DenseReluDense.wi_0.weight")
        p["wi_1"] = stack(ff + "DenseReluDense.wi_1.weight")
    else:
        p["wi"] = stack(ff + "DenseReluDense.wi.weight")
    return p


def load_t5_encoder(path_or_repo_id, dtype=jnp.float32, *,
                    precision: jax.lax.Precision | str | None = jax.lax.Precision.HIGHEST) -> T5EncoderFn:
    """Load a T5 encoder from a Hugging Face checkpoint: a local folder or a hub repo id.

    Works with ``T5EncoderModel`` and full ``T5Model`` / ``T5ForConditionalGeneration`` checkpoints
    (e.g. ``google-t5/t5-base``, ``google-t5/t5-large``, ``google/flan-t5-*``), stored as
    ``model.safetensors`` (read without torch) or ``pytorch_model.bin`` (needs torch), optionally
    sharded. Only the encoder and the shared embedding are loaded.

    Args:
      path_or_repo_id: local folder with ``config.json`` + weights, or ``owner/name`` on the hub.
      dtype: matmul dtype, ``jnp.float32`` (exact) or ``jnp.bfloat16`` (accelerators).
      precision: matmul precision, see :class:`T5Encoder`.
    Returns:
      :class:`T5EncoderFn`, callable as ``fn(input_ids int32 [B, S], attention_mask [B, S])``
      returning float32 ``[B, S, d_model]``.
    Raises:
      HubError: hub unreachable (the message says how to use a local folder), files missing, not a
        T5 checkpoint, a decoder-only checkpoint, or weights inconsistent with ``config.json``.
    """
    cfg_dict, tensors = read_hf_t5_weights(path_or_repo_id)
    config = T5EncoderConfig.from_hf_dict(cfg_dict)
    params = params_from_hf(tensors, config, source=str(path_or_repo_id))
    return T5EncoderFn(build_t5_encoder(config, params, dtype=dtype, precision=precision))


def build_t5_encoder(config: T5EncoderConfig, params: Mapping[str, np.ndarray], *, dtype=jnp.float32,
                     precision=jax.lax.Precision.HIGHEST) -> T5Encoder:
    """A :class:`T5Encoder` holding ``params`` (from :func:`params_from_hf`), without random init."""
    return module_from_pure_dict(lambda: T5Encoder(config, dtype=dtype, precision=precision, rngs=nnx.Rngs(0)),
                                 params, error=HubError, what="T5 weights vs config.json")


def resolve_t5_source(name: str) -> str:
    """Where to load the T5 called ``name`` from: a local folder as is; for a hub name the first candidate
    (:func:`~magnet_jax.text.presets.t5_hub_candidates`) already in the Hugging Face cache, else the canonical one."""
    if hub.is_local(name):
        return name
    cands = t5_hub_candidates(name)
    return next((c for c in cands if hub.is_cached(c)), cands[0])


def load_text_stack(name: str, text_dim: int, *, dtype=jnp.float32, seed: int = 1234):
    """(tokenizer, :class:`T5EncoderFn`) for ``name``: ``"tiny"`` (packaged tokenizer + a seeded random-init T5
    of width ``text_dim``, identical in every process), an audiocraft T5 name, a hub repo id or a folder.
    Checks that the encoder's width is ``text_dim``."""
    if name in ("", "tiny"):
        tok = load_t5_tokenizer(str(TINY_TOKENIZER))
        enc = T5EncoderFn(T5Encoder(tiny_t5_config(text_dim, len(tok)), dtype=dtype, rngs=nnx.Rngs(seed)))
    else:
        source = resolve_t5_source(name)
        tok = load_t5_tokenizer(source)
        enc = load_t5_encoder(source, dtype=dtype)
    if enc.dim != text_dim:
        raise ValueError(f"text encoder {name!r} has width {enc.dim}, but the LM expects text_dim={text_dim}")
    return tok, enc
