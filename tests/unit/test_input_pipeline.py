"""The Grain input pipeline (magnet_jax.data.input_pipeline): file sampling, crop / pad, padding id, text.

A list of dicts stands in for the TFDS data source (same keys as the tokenized dataset).
"""
from __future__ import annotations

import collections
import random
from pathlib import Path

import numpy as np
import pytest

from magnet_jax.data.descriptions import augment_description
from magnet_jax.data.input_pipeline import FileCrop, crop_window, make_dataset
from magnet_jax.data.segment_index import SegmentIndex, build_index
from magnet_jax.objectives.magnet import masked_cross_entropy
from magnet_jax.text import load_t5_tokenizer

K, MASK_ID = 2, 64
TOK = Path(__file__).resolve().parents[2] / "magnet_jax" / "text" / "assets" / "tiny_t5_tokenizer"


@pytest.fixture(scope="module")
def tokenizer():
    return load_t5_tokenizer(str(TOK))


def _segment(path, offset, frames, description="", **meta):
    """Codes that encode their own absolute frame position (frame f of the file -> f % 50 + 1)."""
    pos = (np.arange(offset, offset + frames) % 50 + 1).astype(np.int16)
    return {"codes": np.stack([pos] * K), "num_frames": frames, "path": path.encode(), "offset_frames": offset,
            "description": description.encode(), **{k: (v.encode() if isinstance(v, str) else v)
                                                    for k, v in meta.items()}}


def _crop(source, T, **kw):
    kw.setdefault("tokenizer", None)
    return FileCrop(source, build_index(source), segment_frames=T, pad_id=MASK_ID, text_len=16, **kw)


def test_crop_at_any_offset_of_a_long_file(tokenizer):
    # a 190-frame file stored as 100-frame segments overlapping by 50 (the tokenizer's layout), window 50:
    # crops start anywhere in [0, 140] (not only at stored segment starts) and hold the file's own frames
    source = [_segment("a.wav", o, 100) for o in (0, 50, 90)]
    fn = _crop(source, 50, tokenizer=tokenizer, min_segment_ratio=1.0)
    starts = set()
    for seed in range(300):
        ex = fn(0, np.random.default_rng(seed))
        assert ex["padding_mask"].all()
        first = int(ex["codes"][0, 0]) - 1
        np.testing.assert_array_equal(ex["codes"][0], (np.arange(first, first + 50) % 50) + 1)
        starts.add(first)
    assert len(starts) == 50  # every phase of the 50-periodic position code is reached


def test_short_file_and_tail_are_kept_and_padded_with_the_mask_id(tokenizer):
    # a 30-frame clip with a 50-frame window: kept (not filtered), padded with MASK_ID, masked out
    fn = _crop([_segment("short.wav", 0, 30)], 50, tokenizer=tokenizer, min_segment_ratio=0.8)
    ex = fn(0, np.random.default_rng(0))
    assert ex["padding_mask"].sum() == 30 and not ex["padding_mask"][30:].any()
    assert (ex["codes"][:, 30:] == MASK_ID).all() and (ex["codes"][:, :30] != MASK_ID).all()
    # tail crops (seek up to F - 0.8 T) of a long file are padded, as audiocraft's min_segment_ratio allows
    fn = _crop([_segment("a.wav", 0, 100)], 50, tokenizer=tokenizer, min_segment_ratio=0.8)
    valid = {int(fn(0, np.random.default_rng(s))["padding_mask"].sum()) for s in range(400)}
    assert min(valid) == 40 and max(valid) == 50


def test_make_dataset_keeps_every_clip(tokenizer):
    source = [_segment(f"c{i}.wav", 0, n) for i, n in enumerate((10, 20, 60, 100))]
    ds = make_dataset(source, segment_frames=50, pad_id=MASK_ID, tokenizer=tokenizer, text_len=8, batch_size=4,
                      seed=0, train=False)
    (batch,) = list(ds)
    assert sorted(batch["padding_mask"].sum(1).tolist()) == [10, 20, 50, 50]
    assert (batch["codes"][~np.broadcast_to(batch["padding_mask"][:, None], batch["codes"].shape)] == MASK_ID).all()


def test_files_sampled_uniformly_not_by_segment_count(tokenizer):
    # one long file with 9 segments and one short clip: uniform over files (audiocraft's default)
    source = [_segment("long.wav", 50 * i, 100) for i in range(9)] + [_segment("clip.wav", 0, 40)]
    ds = make_dataset(source, segment_frames=50, pad_id=MASK_ID, tokenizer=tokenizer, text_len=8, batch_size=1,
                      seed=0)
    it = iter(ds)
    n_short = sum(int(next(it)["padding_mask"].sum()) == 40 for _ in range(60))
    assert n_short == 30  # one draw per file per epoch
    fn = _crop(source, 50, tokenizer=tokenizer, sample_on_duration=True)
    lengths = collections.Counter(int(fn(0, np.random.default_rng(s))["padding_mask"].sum()) for s in range(300))
    assert lengths[40] < 40   # 40 of 540 frames: ~7 %


def test_crop_window_rules():
    segs = [(0, 100), (50, 100), (90, 100)]
    assert crop_window(segs, 70, 50) == (1, 20)          # inside the second segment
    assert crop_window(segs, 170, 50) == (2, 80)         # tail window: padded, not slid back
    assert crop_window([(0, 30), (30, 30)], 20, 30) == (1, 0)    # no overlap: slid into the segment holding most
    assert crop_window([(0, 30), (30, 30)], 10, 30) == (0, 0)
    assert crop_window([(0, 30), (60, 30)], 40, 10) == (0, 20)   # a hole (dropped silent segment): slid back


def test_padded_frames_do_not_reach_the_loss():
    # targets at padded frames are the mask id (out of the logits' range) with weight 0: finite, ignored
    logits = np.random.default_rng(0).standard_normal((1, 4, MASK_ID)).astype(np.float32)
    targets = np.array([[3, 5, MASK_ID, MASK_ID]])
    loss, n = masked_cross_entropy(logits, targets, np.array([[1.0, 1.0, 0.0, 0.0]]))
    ref, _ = masked_cross_entropy(logits[:, :2], targets[:, :2], np.ones((1, 2)))
    assert float(n) == 2 and np.isfinite(float(loss)) and abs(float(loss) - float(ref)) < 1e-6


def test_index_groups_segments_by_file():
    idx = SegmentIndex.from_records([("b", 50, 100), ("a", 0, 10), ("b", 0, 100)])
    assert idx.paths == ("b", "a") and [s.tolist() for s in idx.segments_of()] == [[2, 0], [1]]
    assert idx.file_frames().tolist() == [150, 10]
    again = SegmentIndex(**{k: v for k, v in zip(("paths", "file", "offset", "frames"), (
        tuple(idx.to_json()["paths"]), *(np.asarray(idx.to_json()[k]) for k in ("file", "offset_frames",
                                                                                   "num_frames"))))})
    assert again.file.tolist() == idx.file.tolist()


# ----------------------------------------------------------------------------- descriptions
META = {"description": "happy rock", "key": "C Major", "bpm": np.float32(120.0), "genre": "Rock",
        "moods": "Happy, energetic", "keywords": "", "instrument": "Guitar"}


def test_description_trailing_dot_and_no_metadata_merge():
    assert augment_description(META, random.Random(0), merge_text_p=1e-9) == "happy rock."
    assert augment_description({"description": "x."}, random.Random(0), merge_text_p=1e-9) == "x."
    assert augment_description(META, random.Random(0)) == "happy rock"          # augmentation off
    assert augment_description({"description": ""}, random.Random(0), merge_text_p=1.0) == ""


def test_description_merges_metadata_as_audiocraft():
    out = augment_description(META, random.Random(0), merge_text_p=1.0, drop_desc_p=0.0, drop_other_p=1.0)
    desc, _, meta = out.partition(". ")
    assert desc == "happy rock"
    assert sorted(meta.split(". ")) == ["bpm: 120.0", "genre: rock", "instrument: guitar", "key: c major",
                                        "moods: happy, energetic"]
    only_meta = augment_description(META, random.Random(1), merge_text_p=1.0, drop_desc_p=1.0, drop_other_p=1.0)
    assert "happy rock" not in only_meta and "genre: rock" in only_meta
    # each field kept with probability drop_other_p (audiocraft's naming), the description dropped with drop_desc_p
    rng = random.Random(0)
    outs = [augment_description(META, rng, merge_text_p=1.0, drop_desc_p=0.5, drop_other_p=0.5) for _ in range(2000)]
    assert 0.45 < np.mean(["genre: rock" in o for o in outs]) < 0.55
    assert 0.45 < np.mean([o.startswith("happy rock") for o in outs]) < 0.55
    rng = random.Random(0)
    merged = [augment_description(META, rng, merge_text_p=0.25, drop_other_p=1.0) for _ in range(2000)]
    assert 0.21 < np.mean([o != "happy rock." for o in merged]) < 0.29


def test_pipeline_uses_metadata_when_training(tokenizer):
    source = [_segment("a.wav", 0, 60, description="", genre="Rock")]
    fn = _crop(source, 50, tokenizer=tokenizer, merge_text_p=1.0, drop_other_p=1.0)
    assert fn(0, np.random.default_rng(0))["text_mask"].sum() > 0  # conditioned on "genre: rock"
    fn = _crop(source, 50, tokenizer=tokenizer)
    assert fn(0, np.random.default_rng(0))["text_mask"].sum() == 0
