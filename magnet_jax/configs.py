"""Default configurations: the six released MAGNeT models and tiny test models.

``configs/<name>.py`` files are thin ``get_config()`` wrappers around :func:`get_config` so that
absl CLIs can load and override them (``--config=configs/magnet_small_10secs.py --config.model.dtype=bfloat16``).

Sections: ``model`` (:class:`~magnet_jax.model.MagnetConfig` fields), ``generation``
(:class:`~magnet_jax.decoding.GenerationConfig` fields, audiocraft names), ``codec``, ``text``,
``mesh`` (data / fsdp / tensor sizes, -1 = the rest), ``distributed``; ``checkpoint`` (hub repo id of
the released weights); training fields live at the top level (``total_steps``, ``data_dir``, ...).
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
    # ---- training (top level, so the CLI reads --config.total_steps=N --config.data_dir=DIR ...)
    c.data_dir = ""                          # folder written by tools/tokenize_dataset.py
    c.dataset_name = ""                      # TFDS name inside data_dir ("" = the only one there)
    c.train_split = "train"
    c.eval_split = ""                        # "" = no eval; e.g. "train[:5%]" or a held-out split name
    c.min_segment_ratio = 0.8                # clips shorter than this x segment are not used
    c.worker_count = 0                       # grain worker processes per host
    c.batch_size = 192 if music else 128     # global batch
    c.grad_accum_steps = 1
    c.total_steps = 1_000_000 if music else 200_000
    c.learning_rate = 1e-4 if music else 5e-4
    c.schedule = "cosine" if music else "inverse_sqrt"
    c.warmup_steps = 4000 if music else 3000
    c.lr_min_ratio = 0.0
    c.b1, c.b2, c.eps, c.weight_decay, c.max_grad_norm = 0.9, 0.95, 1e-8, 0.1, 1.0
    c.ema_decay, c.ema_every = 0.99, 10
    c.cfg_dropout = 0.3 if music else 0.1
    c.per_sample_stage = False
    c.per_sample_cfg = False
    c.log_every, c.eval_every, c.eval_batches = 100, 2000, 8
    c.checkpoint_every, c.keep_checkpoints = 2000, 3
    c.init_from = ""                         # fine-tune: released checkpoint (hub id / folder); "" = from scratch
    c.peak_tflops_per_device = 0.0           # for MFU; 0 = known TPU table, or a measured matmul on CPU
    # multi-host: jax.distributed.initialize(coordinator, num_processes, process_id) when set
    c.distributed = ml_collections.ConfigDict(dict(coordinator_address="", num_processes=1, process_id=0,
                                                   local_device_count=0))
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
        c.text.name = "tiny"                  # packaged tokenizer + random-init T5 (magnet_jax.text.presets)
        c.text.max_length = 16
        c.update(total_steps=200, batch_size=8, learning_rate=3e-3, warmup_steps=20, log_every=1,
                 eval_every=50, eval_batches=2, checkpoint_every=50)
    else:
        raise ValueError(f"unknown config {name!r}; known: {sorted(RELEASED) + ['tiny', 'tiny_audio']}")
    c.name = name
    return c


def model_config(c: ml_collections.ConfigDict):
    """The :class:`MagnetConfig` of a config's ``model`` section."""
    from magnet_jax.model import MagnetConfig
    return MagnetConfig.from_dict(c.model.to_dict())
