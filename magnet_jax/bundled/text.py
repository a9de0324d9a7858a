"""The bundled model's text encoder: a Unigram tokenizer trained on the corpus descriptions + a frozen random T5.

No pretrained T5 can be downloaded where the bundled model is built, so the text stack is made here:

* **Tokenizer**: a SentencePiece-Unigram model trained with the ``tokenizers`` library on the training split's
  descriptions (plus every ASCII letter, digit and punctuation mark, so no typed word maps to ``<unk>``),
  wrapped in transformers' ``T5Tokenizer`` with the real T5 layout (``<pad>``=0, ``</s>``=1, ``<unk>``=2,
  ``<extra_id_*>`` sentinels) and saved with ``save_pretrained``.
* **Encoder**: a small T5 encoder (d_model 128, 2 layers, 4 heads, T5 relative-position buckets) with seeded
  random weights drawn as transformers' ``T5PreTrainedModel._init_weights`` draws them, written in the Hugging
  Face layout (``config.json`` + ``model.safetensors`` with HF tensor names, from NumPy, no torch), so the
  exact loader the released models use (:func:`magnet_jax.convert.t5.load_text_stack`) reads it.

Why a *frozen random* encoder is enough: the encoder is never trained, so it is a fixed, deterministic map from
the token sequence to per-token features. With a 128-dim Gaussian embedding per piece (pieces are ~whole words
here: "trombone", "minor", "bpm") and two residual attention blocks on top, different word sequences give
different features (the map is injective in practice: random projections of distinct one-hot sequences almost
surely differ, and the residual path keeps each token's own embedding), and the relative-position bias mixes in
word order ("C minor" vs "minor ... C"). What must be *learned* is only which features matter: the LM's trained
text projection (``condition_provider...output_proj``) and its cross-attention layers learn to read the
instrument / tempo / key words out of these fixed features, exactly as they learn to read a pretrained T5's.
A pretrained T5 adds semantics (synonyms, unseen phrasings); our descriptions come from a small closed
vocabulary, which the training data covers, so a fixed feature map loses little.
"""
from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Iterable

import numpy as np

D_MODEL, NUM_LAYERS, NUM_HEADS, D_KV, D_FF = 128, 2, 4, 32, 256
NUM_BUCKETS, MAX_DISTANCE = 32, 128
VOCAB_SIZE = 1000           # Unigram target; the trainer keeps fewer pieces when the corpus has fewer
EXTRA_IDS = 8               # <extra_id_*> sentinels, as T5 (never used by MAGNeT)
# Every ASCII character a user may type: all of them become pieces, so nothing typed maps to <unk>.
COVERAGE = [string.ascii_lowercase, string.ascii_uppercase, string.digits, string.punctuation]


def train_tokenizer(descriptions: Iterable[str], out: str | Path, *, vocab_size: int = VOCAB_SIZE):
    """Trains the Unigram tokenizer on ``descriptions`` and saves it to ``out`` (a ``T5Tokenizer`` folder)."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import T5Tokenizer

    texts = [d for d in descriptions if d] + COVERAGE
    if len(texts) == len(COVERAGE):
        raise ValueError("no descriptions to train the tokenizer on: give the corpus' training descriptions")
    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                           unk_token="<unk>", initial_alphabet=list("".join(COVERAGE)))
    vocab = [tuple(x) for x in json.loads(sp.to_str())["model"]["vocab"]]
    if [v[0] for v in vocab[:3]] != ["<pad>", "</s>", "<unk>"]:
        raise RuntimeError(f"tokenizers put the special tokens at {vocab[:3]}, expected <pad>, </s>, <unk> first")
    tok = T5Tokenizer(vocab=vocab, extra_ids=EXTRA_IDS)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out))
    return tok


def hf_t5_config(vocab_size: int, *, d_model: int = D_MODEL, num_layers: int = NUM_LAYERS,
                 num_heads: int = NUM_HEADS, d_kv: int = D_KV, d_ff: int = D_FF) -> dict:
    """A transformers ``T5Config`` dict for the encoder (``architectures``: T5EncoderModel)."""
    return {"architectures": ["T5EncoderModel"], "model_type": "t5", "vocab_size": int(vocab_size),
            "d_model": d_model, "d_kv": d_kv, "d_ff": d_ff, "num_layers": num_layers, "num_heads": num_heads,
            "relative_attention_num_buckets": NUM_BUCKETS, "relative_attention_max_distance": MAX_DISTANCE,
            "dropout_rate": 0.0, "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0,
            "feed_forward_proj": "relu", "is_encoder_decoder": False, "use_cache": False,
            "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}


def random_t5_tensors(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """HF-named float32 tensors of a ``T5EncoderModel``, drawn as transformers' ``_init_weights`` (factor 1)."""
    rng = np.random.default_rng(seed)
    d, h, kv, ff = cfg["d_model"], cfg["num_heads"], cfg["d_kv"], cfg["d_ff"]

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    t = {"shared.weight": normal((cfg["vocab_size"], d), 1.0)}
    for i in range(cfg["num_layers"]):
        a, f = f"encoder.block.{i}.layer.0.", f"encoder.block.{i}.layer.1."
        t[a + "SelfAttention.q.weight"] = normal((h * kv, d), (d * kv) ** -0.5)
        t[a + "SelfAttention.k.weight"] = normal((h * kv, d), d ** -0.5)
        t[a + "SelfAttention.v.weight"] = normal((h * kv, d), d ** -0.5)
        t[a + "SelfAttention.o.weight"] = normal((d, h * kv), (h * kv) ** -0.5)
        if i == 0:
            t[a + "SelfAttention.relative_attention_bias.weight"] = normal((cfg["relative_attention_num_buckets"], h),
                                                                           d ** -0.5)
        t[a + "layer_norm.weight"] = np.ones(d, np.float32)
        t[f + "DenseReluDense.wi.weight"] = normal((ff, d), d ** -0.5)
        t[f + "DenseReluDense.wo.weight"] = normal((d, ff), ff ** -0.5)
        t[f + "layer_norm.weight"] = np.ones(d, np.float32)
    t["encoder.final_layer_norm.weight"] = np.ones(d, np.float32)
    return t


def write_t5_encoder(out: str | Path, vocab_size: int, *, seed: int = 0, **dims) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` of a seeded random T5 encoder into ``out``."""
    from safetensors.numpy import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = hf_t5_config(vocab_size, **dims)
    save_file(random_t5_tensors(cfg, seed), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    return out


def read_descriptions(manifest: str | Path) -> list[str]:
    """The ``description`` of every line of an audiocraft ``.jsonl`` manifest (or its clips' sidecars)."""
    out = []
    for line in Path(manifest).read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        desc = row.get("description")
        if desc is None:
            side = Path(row["path"]).with_suffix(".json")
            desc = json.loads(side.read_text()).get("description") if side.is_file() else None
        if desc:
            out.append(desc)
    return out


def build_text_encoder(descriptions: Iterable[str], out: str | Path, *, seed: int = 0, **dims) -> Path:
    """Tokenizer + frozen random T5 in one folder ``out``, loadable by ``load_text_stack(str(out), 128)``."""
    tok = train_tokenizer(descriptions, out)
    write_t5_encoder(out, len(tok), seed=seed, **dims)
    return Path(out)
