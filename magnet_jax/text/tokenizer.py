"""T5 tokenization with the reference conditioner's semantics (audiocraft ``T5Conditioner.tokenize``).

Reference behaviour, reproduced exactly by :func:`tokenize`:

1. ``None`` texts become ``""``.
2. (training only) word dropout: each space-separated word is dropped with probability ``p``.
3. ``tokenizer(texts, padding=True)``: every text gets ``</s>`` appended, the batch is padded with
   ``<pad>`` (id 0) to its longest row, nothing is truncated.
4. Rows whose text is exactly ``""`` (after step 2) get an **all-zero attention mask**, *before*
   T5 runs - the encoder sees no valid key for them (see :mod:`magnet_jax.text.t5`).

:func:`tokenize` can additionally pad to a fixed length (``pad_to``) for static shapes under
``jit``; see its docstring for the truncation rule.

The tokenizer is transformers' ``T5Tokenizer`` (in transformers 5 it is the ``tokenizers``-backed
fast tokenizer; no torch and no sentencepiece needed when the folder has ``tokenizer.json``).
"""
from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from magnet_jax.hub import HubError, is_local, resolve_file

__all__ = ["load_t5_tokenizer", "tokenize", "T5Tokenize"]

_VOCAB_FILES = ("tokenizer.json", "spiece.model")


def load_t5_tokenizer(path_or_repo_id):
    """transformers' ``T5Tokenizer`` from a local folder or a hub repo id (e.g. ``google-t5/t5-base``).

    The vocabulary file (``tokenizer.json``, else ``spiece.model``, which needs the
    ``sentencepiece`` package) is located first: transformers 5 silently builds an *empty*
    tokenizer (every word -> ``<unk>``) when the hub is unreachable, which must not happen here.

    Raises:
      HubError: no vocabulary in the folder / repo, the hub cannot be reached (the message says how
        to pass a local folder instead), or the files do not load as a T5 tokenizer.
    """
    name = str(path_or_repo_id)
    if is_local(path_or_repo_id):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise HubError(f"{name!r}: a T5 tokenizer is loaded from a folder (with tokenizer.json), not a file")
        if not any((folder / f).is_file() for f in _VOCAB_FILES):
            raise HubError(f"local folder {name!r} has no T5 tokenizer: expected one of {_VOCAB_FILES}")
        source = str(folder)
    else:
        vocab = next((v for v in (resolve_file(name, f, optional=True) for f in _VOCAB_FILES) if v), None)
        if vocab is None:
            raise HubError(f"hub repo {name!r} has no T5 tokenizer: expected one of {_VOCAB_FILES}")
        for f in ("tokenizer_config.json", "special_tokens_map.json"):
            resolve_file(name, f, optional=True)  # into the same snapshot folder
        # load from the snapshot folder, not the repo id: transformers then makes no hub calls (offline-safe)
        source = str(Path(vocab).parent)

    import transformers
    from transformers import T5Tokenizer

    prev = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        tok = T5Tokenizer.from_pretrained(source)
    except Exception as e:  # OSError, ValueError (e.g. spiece.model without sentencepiece), ...
        first = str(e).splitlines()[0] if str(e) else ""
        raise HubError(f"could not load a T5 tokenizer from {name!r} ({type(e).__name__}: {first})") from None
    finally:
        transformers.logging.set_verbosity(prev)
    if tok.vocab_size <= len(tok.all_special_tokens) or tok.eos_token_id is None:
        raise HubError(f"the T5 tokenizer loaded from {name!r} has no vocabulary (vocab_size {tok.vocab_size})")
    return tok


def _word_dropout(texts: list[str], p: float, rng: random.Random) -> list[str]:
    """audiocraft's word dropout: keep each ``" "``-separated word with probability ``1 - p``."""
    return [" ".join(w for w in t.split(" ") if rng.random() >= p) for t in texts]


def tokenize(tokenizer, texts: Sequence[str | None], *, pad_to: int | None = None,
             word_dropout: float = 0.0, rng: random.Random | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> ``(input_ids int32 [B, S], attention_mask int32 [B, S])`` like ``T5Conditioner``.

    Args:
      tokenizer: a T5 tokenizer (:func:`load_t5_tokenizer`).
      texts: descriptions; ``None`` or ``""`` is the null condition (all-zero mask row).
      pad_to: None (reference): ``S`` is the longest row of the batch (``</s>`` included). An int:
        ``S = pad_to`` exactly, for static shapes - shorter rows are padded with ``<pad>`` / mask 0,
        and a longer row is truncated, with a warning naming its length, to its first ``pad_to - 1``
        tokens followed by ``</s>`` (the same as the tokenizer's own ``truncation=True,
        max_length=pad_to``). The reference never
        truncates, so choose ``pad_to`` >= the longest prompt to reproduce it exactly; padding
        beyond the longest row does not change the hidden states of the real tokens.
      word_dropout: probability of dropping each word (training augmentation of the reference;
        0 at inference). A row that becomes ``""`` is then a null row.
      rng: ``random.Random`` for the word dropout (default: the global ``random`` module).
    """
    entries = ["" if t is None else str(t) for t in texts]
    if word_dropout > 0.0:
        entries = _word_dropout(entries, word_dropout, rng if rng is not None else random)
    if not entries:
        raise ValueError("tokenize needs at least one text")
    enc = tokenizer(entries, padding=True, return_tensors="np")
    ids = np.asarray(enc["input_ids"], dtype=np.int32)
    mask = np.asarray(enc["attention_mask"], dtype=np.int32)
    if pad_to is not None:
        ids, mask = _fit_length(ids, mask, int(pad_to), tokenizer)
    mask[[i for i, t in enumerate(entries) if t == ""]] = 0
    return ids, mask


def _fit_length(ids: np.ndarray, mask: np.ndarray, length: int, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    if length < 1:
        raise ValueError(f"pad_to must be >= 1, got {length}")
    B, S = ids.shape
    if S <= length:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        out_ids = np.full((B, length), pad_id, np.int32)
        out_mask = np.zeros((B, length), np.int32)
        out_ids[:, :S], out_mask[:, :S] = ids, mask
        return out_ids, out_mask
    if tokenizer.padding_side != "right":
        raise ValueError("pad_to truncation assumes right padding (T5's default)")
    eos = tokenizer.eos_token_id
    out_ids, out_mask = ids[:, :length].copy(), mask[:, :length].copy()
    n = mask.sum(axis=1)
    long = n > length
    if long.any():   # never silent: the truncated tail is conditioning the model will not see
        warnings.warn(f"{int(long.sum())} description(s) longer than {length} T5 tokens (the longest has "
                      f"{int(n.max())}) are truncated to {length}; raise the length (train: "
                      f"--config.text.max_length) to keep them whole", UserWarning, stacklevel=3)
    out_ids[long, length - 1] = eos
    return out_ids, out_mask


class T5Tokenize:
    """A tokenizer bound to :func:`tokenize`: ``T5Tokenize(path)(texts) -> (ids, mask)``."""

    def __init__(self, path_or_repo_id_or_tokenizer, *, pad_to: int | None = None):
        tok = path_or_repo_id_or_tokenizer
        self.tokenizer = load_t5_tokenizer(tok) if isinstance(tok, (str, os.PathLike)) else tok
        self.pad_to = pad_to

    def __call__(self, texts: Sequence[str | None], **kwargs) -> tuple[np.ndarray, np.ndarray]:
        kwargs.setdefault("pad_to", self.pad_to)
        return tokenize(self.tokenizer, texts, **kwargs)
