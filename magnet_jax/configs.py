"""Default configurations: the six released MAGNeT models and tiny test models.

``configs/<name>.py`` files are thin ``get_config()`` wrappers around :func:`get_config` so that
absl CLIs can load and override them (``--config=configs/magnet_small_10secs.py --config.model.dtype=bfloat16``).

Sections: ``model`` (:class:`~magnet_jax.model.MagnetConfig` fields), ``generation``
(:class:`~magnet_jax.decoding.GenerationConfig` fields, audiocraft names), ``codec``, ``text``,
``checkpoint`` (hub repo id of the released weights), ``train``, ``data``, ``mesh``.
"""
from __future__ import annotations

import ml_collections

MUSIC_GENERATION = dict(use_sampling=True, temp=3.0, top_k=0, top_p=0.9, max_cfg_coef=10.0, min_cfg_coef=1.0,
                        decoding_steps=(20, 10, 10, 10), span_arrangement="nonoverlap", span_scoring="max",
                        anneal_temp=True)
AUDIO_GENERATION = dict(MUSIC_GENERATION, temp=3.5, top_p=0.8, max_cfg_coef=20.0)

_SMALL = dict(dim=1024, num_heads=16, num_layers=24)
_MEDIUM = dict(dim=1536, num_heads=24, num_layers=48)

RELEASED = {
    "magnet_small_10secs": dict(hub="facebook/magnet-small-10secs", size=_SMALL, segment=10, kind="music"),
    "magnet_medium_10secs": dict(hub="facebook/magnet-medium-10secs", size=_MEDIUM, segment=10, kind="music"),
    "magnet_small_30secs": dict(hub="facebook/magnet-small-30secs", size=_SMALL, segment=30, kind="music"),
    "magnet_medium_30secs": dict(hub="facebook/magnet-medium-30secs", size=_MEDIUM, segment=30, kind="music"),
    "audio_magnet_small": dict(hub="facebook/audio-magnet-small", size=_SMALL, segment=10, kind="audio"),
    "audio_magnet_medium": dict(hub="facebook/audio-magnet-medium", size=_MEDIUM, segment=10, kind="audio"),
}


def _base(kind: str, segment: float) -> ml_collections.ConfigDict:
    music = kind == "music"
    c = ml_collections.ConfigDict()
    c.name = ""
    c.seed = 0
    c.model = ml_collections.ConfigDict(dict(
        n_q=4, card=2048, dim=1024, num_heads=16, num_layers=24, hidden_scale=4,
        text_dim=768 if music else 1024, subcodes_context=5, span_len=3, frame_rate=50,
        segment_duration=float(segment), max_period=10000.0, layer_norm_eps=1e-5, mask_text_padding=False,
        dtype="float32", remat=False, scan_unroll=1))
    gen = dict(MUSIC_GENERATION if music else AUDIO_GENERATION)
    if segment >= 30:
        gen["decoding_steps"] = (int(20 * segment // 10), 10, 10, 10)
    c.generation = ml_collections.ConfigDict(gen)
    c.checkpoint = ""                         # hub repo id or local folder of the released LM
    c.codec = ml_collections.ConfigDict(dict(
        name="facebook/encodec_32khz" if music else "", sample_rate=32000 if music else 16000, channels=1))
    c.text = ml_collections.ConfigDict(dict(
        name="t5-base" if music else "t5-large", max_length=64, word_dropout=0.3 if music else 0.0))
    c.train = ml_collections.ConfigDict(dict(
        total_steps=1_000_000 if music else 200_000, batch_size=192 if music else 128,
        learning_rate=1e-4 if music else 5e-4, schedule="cosine" if music else "inverse_sqrt",
        warmup_steps=4000 if music else 3000, lr_min_ratio=0.0, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1,
        max_grad_norm=1.0, grad_accum_steps=1, ema_decay=0.99, ema_every=10,
        cfg_dropout=0.3 if music else 0.1, per_sample_stage=False, per_sample_cfg=False,
        log_every=100, eval_every=2000, eval_steps=10, checkpoint_every=2000, keep_checkpoints=3,
        init_from=""))                        # fine-tuning: a released checkpoint (hub id / folder)
    c.data = ml_collections.ConfigDict(dict(
        data_dir="", name="magnet_codes", train_split="train", eval_split="", min_segment_ratio=0.8,
        worker_count=0, shuffle_seed=0))
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    return c


def get_config(name: str) -> ml_collections.ConfigDict:
    """The config of a released model (``magnet_small_10secs``, ...) or a test model (``tiny``, ``tiny_audio``)."""
    if name in RELEASED:
        r = RELEASED[name]
        c = _base(r["kind"], r["segment"])
        c.model.update(r["size"])
        c.checkpoint = r["hub"]
    elif name in ("tiny", "tiny_audio"):
        kind = "music" if name == "tiny" else "audio"
        c = _base(kind, 2.0)
        # 4 codebooks x 2048 like the released tokenizers; a tiny transformer and text encoder width.
        c.model.update(dim=64, num_heads=4, num_layers=2, text_dim=32)
        c.generation.decoding_steps = (8, 4, 4, 4)
        c.text.name = ""                      # random-init tiny T5 (see magnet_jax.text)
        c.text.max_length = 16
        c.train.update(total_steps=200, batch_size=8, learning_rate=3e-3, warmup_steps=20, log_every=1,
                       eval_every=50, eval_steps=2, checkpoint_every=50)
    else:
        raise ValueError(f"unknown config {name!r}; known: {sorted(RELEASED) + ['tiny', 'tiny_audio']}")
    c.name = name
    return c


def model_config(c: ml_collections.ConfigDict):
    """The :class:`MagnetConfig` of a config's ``model`` section."""
    from magnet_jax.model import MagnetConfig
    return MagnetConfig.from_dict(c.model.to_dict())
