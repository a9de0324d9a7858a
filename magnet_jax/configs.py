"""Experiment configs (ml_collections): a preset (:mod:`magnet_jax.presets`) plus the training defaults.

``configs/magnet.py:NAME`` hands ``NAME`` to :func:`get_config` (big_vision style), so a CLI loads and
overrides one config file: ``--config=configs/magnet.py:magnet_small_10secs --config.model.dtype=bfloat16``.
Each default is defined once: the ``model``, ``generation`` and ``codec`` sections and the T5 name are the
preset's (:func:`magnet_jax.presets.get`); the training fields come from
:class:`~magnet_jax.training.config.TrainConfig` (read back typed, at the CLI edge, by ``TrainConfig.from_config``),
with the per-preset changes of :data:`TRAINING` on top. Only ``configs/``, tools, benchmarks and tests import this
module; generation reads the presets.
"""
from __future__ import annotations

import ml_collections

from magnet_jax import presets
from magnet_jax.bundled.config import WEIGHTS_DIR
from magnet_jax.model.families import family_for_objective
from magnet_jax.presets import HYBRID_PREFIX, KINDS, RELEASED, TINY
from magnet_jax.training.config import TrainConfig

__all__ = ["KINDS", "RELEASED", "TINY", "TRAINING", "get_config", "model_config"]

_TINY_TRAINING = dict(total_steps=200, batch_size=8, learning_rate=3e-3, warmup_steps=20, log_every=1, eval_every=50,
                      eval_batches=2, checkpoint_every=50, text=dict(max_length=16))
# The released architectures train at audiocraft's batch (192) on a pod slice: per-layer remat and the parameters,
# gradients and optimizer state sharded over every chip (FSDP, the batch over the same axis). The TPU compiler
# refuses them as data-parallel without remat on v4 (8 chips: 34-196 GB of temporaries vs 31 GB of HBM,
# benchmarks/results/tpu_compile.json); --config.mesh.data=-1 --config.mesh.fsdp=1 --config.model.remat=false
# goes back to plain data parallelism where memory allows (a MusicGen config starts from magnet_small_10secs').
_POD = dict(model=dict(remat=True), mesh=dict(data=1, fsdp=-1))
# Per preset: what training changes on top of TrainConfig.defaults(kind) (flat fields, and sections as dicts).
# hybrid_NAME trains with NAME's.
TRAINING = {
    **{name: _POD for name in RELEASED},
    "tiny": _TINY_TRAINING,
    "tiny_audio": _TINY_TRAINING,
    # the bundled model (tools/make_bundled.sh): the shipped LM's schedule (8000 steps of batch 8, cosine from
    # 1e-3, stage 0 drawn 60 % of the time: the codebook that carries the music). Text: the packaged encoder by
    # default; make_bundled.sh passes --config.text.name=WORKDIR/t5. No description merging: the corpus
    # descriptions already name instrument, tempo, key and style.
    presets.BUNDLED: dict(text=dict(name=str(WEIGHTS_DIR / "t5"), max_length=48), merge_text_p=0.0, batch_size=8,
                          learning_rate=1e-3, warmup_steps=100, total_steps=8000, stage_weights=(0.6, 0.2, 0.1, 0.1),
                          log_every=50, eval_every=500, eval_batches=4, checkpoint_every=250),
}


def get_config(name: str = "tiny") -> ml_collections.ConfigDict:
    """The config of a released model (``magnet_small_10secs``, ...), a test model (``tiny``, ``tiny_audio``), the
    bundled model (``bundled``), or ``hybrid_NAME``: NAME trained with the Hybrid-MAGNeT objective
    (``objective = "hybrid"``; the model gets the delay pattern ``0..K-1``; everything else, the window included,
    is NAME's)."""
    p = presets.get(name)
    generation = p.generation.to_dict()
    generation["decoding_steps"] = tuple(generation["decoding_steps"])
    c = ml_collections.ConfigDict()
    c.name = name
    c.checkpoint = p.checkpoint                # hub repo id or local folder of the released LM
    c.model = ml_collections.ConfigDict(p.model.to_dict())
    c.generation = ml_collections.ConfigDict(generation)
    c.codec = ml_collections.ConfigDict(dict(name=p.codec, sample_rate=p.sample_rate, channels=p.channels))
    # training fields: top level for the flat fields, sections text / mesh / distributed (TrainConfig)
    c.update(TrainConfig.defaults(p.kind))
    c.text.name = p.t5
    c.objective = p.family.objective
    base = name
    while base.startswith(HYBRID_PREFIX):
        base = base[len(HYBRID_PREFIX):]
    for k, v in TRAINING.get(base, {}).items():
        if isinstance(v, dict):
            c[k].update(v)
        else:
            c[k] = v
    return c


def model_config(c: ml_collections.ConfigDict):
    """The model config of a config's ``model`` section: the config class of the family its ``objective``
    trains (:class:`MagnetConfig`, ``HybridMagnetConfig`` for ``hybrid``, ``MusicGenConfig`` for ``musicgen``)."""
    return family_for_objective(c.get("objective", "magnet")).config_class.from_dict(c.model.to_dict())
