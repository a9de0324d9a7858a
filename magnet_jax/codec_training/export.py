"""The trained codec of a training workdir, for export (tools/export_codec.py)."""
from __future__ import annotations

from pathlib import Path

import jax
from flax import nnx

from magnet_jax import sharding
from magnet_jax.codec.training_model import CodebookState, TrainableEncodec
from magnet_jax.codec_training.loop import build, codec_config, rvq_config
from magnet_jax.training.checkpoint import restore_latest


def load_trained(cfg, workdir: str | Path, *, ema: bool = True):
    """``(graphdef, params, codebook_state)`` of the newest checkpoint in ``workdir/checkpoints``
    (the EMA generator unless ``ema=False``), or None when there is no checkpoint yet.
    Feed it to :func:`magnet_jax.codec.export_inference_codec` or
    :func:`magnet_jax.convert.encodec_export.export_codec`."""
    mesh = sharding.make_mesh(**cfg.mesh.to_dict())
    graphdef, _, _, _, state = build(cfg, mesh, init=False)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
    restored = restore_latest(Path(workdir) / "checkpoints", abstract)
    if restored is None:
        return None
    src = restored.ema if ema else {"params": restored.params, "codebook": restored.codebook}
    abstract_model = nnx.eval_shape(lambda: TrainableEncodec(codec_config(cfg), rvq_config(cfg)))
    _, params, codebook = nnx.split(abstract_model, nnx.Param, CodebookState)
    nnx.replace_by_pure_dict(params, jax.device_get(src["params"]))
    nnx.replace_by_pure_dict(codebook, jax.device_get(src["codebook"]))
    return graphdef, params, codebook
