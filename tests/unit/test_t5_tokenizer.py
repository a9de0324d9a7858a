"""T5 tokenization with audiocraft's T5Conditioner semantics (packaged tiny tokenizer; no torch)."""
from __future__ import annotations

import random
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.text import T5Encoder, T5Tokenize, load_t5_tokenizer, tokenize
from magnet_jax.text.presets import TINY_TOKENIZER, tiny_t5_config

TEXTS = ["a calm piano melody", None, "", "energetic rock song with drums and electric guitar", "zebra?!"]


@pytest.fixture(scope="module")
def t5_tokenizer():
    return load_t5_tokenizer(str(TINY_TOKENIZER))


def test_packaged_tokenizer_layout(t5_tokenizer):
    assert len(t5_tokenizer) == 132   # 128 pieces + 4 sentinels (the layout of the real T5 vocab, scaled down)
    assert (t5_tokenizer.pad_token_id, t5_tokenizer.eos_token_id, t5_tokenizer.unk_token_id) == (0, 1, 2)


def test_tokenize_semantics(t5_tokenizer):
    ids, mask = tokenize(t5_tokenizer, TEXTS)
    assert ids.dtype == np.int32 and mask.dtype == np.int32
    ref = t5_tokenizer(["" if t is None else t for t in TEXTS])  # unpadded rows
    S = max(len(r) for r in ref.input_ids)
    assert ids.shape == (5, S)
    for i, t in enumerate(TEXTS):
        row = ref.input_ids[i]
        assert row[-1] == t5_tokenizer.eos_token_id == 1
        np.testing.assert_array_equal(ids[i, :len(row)], row)
        assert (ids[i, len(row):] == 0).all()
        assert mask[i].sum() == (0 if not t else len(row))
    # all null: S = 1 (just </s>), mask all zero
    ids0, mask0 = tokenize(t5_tokenizer, [None, ""])
    assert ids0.tolist() == [[1], [1]] and mask0.tolist() == [[0], [0]]


def test_tokenize_pad_to(t5_tokenizer):
    ids, mask = tokenize(t5_tokenizer, TEXTS)
    S = ids.shape[1]
    ids2, mask2 = T5Tokenize(t5_tokenizer, pad_to=S + 6)(TEXTS)
    assert ids2.shape == (5, S + 6)
    np.testing.assert_array_equal(ids2[:, :S], ids)
    np.testing.assert_array_equal(mask2[:, :S], mask)
    assert (ids2[:, S:] == 0).all() and (mask2[:, S:] == 0).all()
    # extra padding does not change the hidden states of real tokens
    enc = T5Encoder(tiny_t5_config(32, len(t5_tokenizer)), rngs=nnx.Rngs(0))
    h, h2 = np.asarray(enc(jnp.asarray(ids), jnp.asarray(mask))), np.asarray(enc(jnp.asarray(ids2), jnp.asarray(mask2)))
    real = mask.astype(bool)
    np.testing.assert_allclose(h2[:, :S][real], h[real], atol=1e-5, rtol=0)
    # truncation == the tokenizer's own truncation (keeps </s>)
    with pytest.warns(UserWarning):
        ids3, mask3 = tokenize(t5_tokenizer, TEXTS, pad_to=8)
    ref = t5_tokenizer(["" if t is None else t for t in TEXTS], padding="max_length", truncation=True,
                       max_length=8, return_tensors="np")
    np.testing.assert_array_equal(ids3, ref["input_ids"])
    np.testing.assert_array_equal(mask3, np.where([[bool(t)] for t in TEXTS], ref["attention_mask"], 0))


def test_truncation_is_never_silent(t5_tokenizer):
    """A description longer than pad_to warns, naming the length; one that fits does not."""
    long = "energetic rock song with drums and electric guitar " * 3
    n = len(t5_tokenizer(long).input_ids)
    with pytest.warns(UserWarning, match=r"1 description\(s\) longer than 10 T5 tokens \(the longest has \d+\)"):
        ids, mask = tokenize(t5_tokenizer, [long, "calm"], pad_to=10)
    assert ids.shape == (2, 10) and ids[0, -1] == t5_tokenizer.eos_token_id and n > 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize(t5_tokenizer, [long, "calm"], pad_to=n)      # exactly fits: no warning
        tokenize(t5_tokenizer, [long])                        # reference semantics never truncate


def test_word_dropout(t5_tokenizer):
    ids, mask = tokenize(t5_tokenizer, ["a b c d e f", "x"], word_dropout=1.0, rng=random.Random(0))
    assert mask.sum() == 0  # every word dropped -> empty -> null rows
    ids, mask = tokenize(t5_tokenizer, ["a b c"], word_dropout=0.5, rng=random.Random(0))
    assert mask.sum() >= 1


def test_random_init_module_runs():
    from magnet_jax.text import T5EncoderConfig
    cfg = T5EncoderConfig(vocab_size=132, d_model=48, d_kv=16, num_heads=4, d_ff=80, num_layers=3,
                          feed_forward_proj="gated-gelu", relative_attention_num_buckets=8,
                          relative_attention_max_distance=20)
    mod = T5Encoder(cfg, rngs=nnx.Rngs(0))
    out = mod(jnp.ones((2, 4), jnp.int32), jnp.array([[1, 1, 1, 0], [0, 0, 0, 0]]))
    assert out.shape == (2, 4, 48) and bool(jnp.isfinite(out).all())


def test_tokenizer_folder_errors(tmp_path):
    from magnet_jax.hub import HubError
    with pytest.raises(HubError, match="no T5 tokenizer"):
        load_t5_tokenizer(str(tmp_path))
