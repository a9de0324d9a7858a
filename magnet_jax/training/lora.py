"""LoRA fine-tuning in the trainer (``config.lora_rank > 0``; the adapters themselves: :mod:`magnet_jax.model.lora`).

The train state's ``params`` are the adapters (their optimizer state and EMA follow them, so a checkpoint holds
adapters, their AdamW moments, their EMA and the counters, nothing of the base model); the base parameters are a
frozen, sharded input of the step (:func:`magnet_jax.training.step.make_train_step` with ``lora``), never
differentiated, never written. Evaluation and the export use the base with the EMA adapters merged in
(:func:`make_merge`); the export also writes the adapter alone (:func:`export_adapter`), which
``MagnetPipeline.from_pretrained(base, adapter=WORKDIR/export)`` applies at load time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import jax
from jax.sharding import PartitionSpec as P

from magnet_jax.model.config import LMConfig
from magnet_jax.model.lora import TARGETS, LoRAConfig, init_adapters, merge
from magnet_jax.model.lora_files import save_adapter
from magnet_jax.training.state import to_shardings


def _full(spec: P, ndim: int) -> tuple:
    return tuple(spec) + (None,) * (ndim - len(spec))


def adapter_specs(params: Mapping, param_specs: Mapping, config: LoRAConfig) -> dict:
    """PartitionSpecs of ``config``'s adapters from those of the kernels they adapt: ``a`` as the kernel's input
    dims, ``b`` as its output dims (the packed axis dropped), the rank dim replicated, the layers axis as the
    kernel's."""
    out: dict = {}
    for key in config.targets:
        t = TARGETS[key]
        s = _full(param_specs["layers"][t.module][t.kernel], len(params["layers"][t.module][t.kernel].shape))
        ins, outs = s[1:1 + t.n_in], s[1 + t.n_in:]
        if t.component is not None:
            outs = outs[1:]
        out.setdefault(t.module, {})[t.name] = {"a": P(s[0], *ins, None), "b": P(s[0], None, *outs)}
    return out


def initial_adapters(params: Mapping, param_specs: Mapping, config: LoRAConfig, seed: int, mesh):
    """``(adapters, specs)``: fresh adapters (``b = 0``: the adapted model starts as the base) for the base
    ``params``, created directly with their shardings on ``mesh``."""
    specs = adapter_specs(params, param_specs, config)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), dict(params))
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x10A)
    make = jax.jit(lambda k: init_adapters(shapes, config, k), out_shardings=to_shardings(specs, mesh))
    return make(key), specs


def make_merge(param_specs: Mapping, adapter_spec: Mapping, config: LoRAConfig, mesh):
    """A jitted ``merged(base, adapters) -> params`` (the base's shardings): the model evaluated and exported."""
    sh = to_shardings(param_specs, mesh)
    return jax.jit(lambda base, adapters: merge(base, adapters, config),
                   in_shardings=(sh, to_shardings(adapter_spec, mesh)), out_shardings=sh)


def export_adapter(folder: str | Path, adapters: Mapping, config: LoRAConfig, *, base: str, model: LMConfig,
                   step: int) -> None:
    """The adapters alone (``adapter.safetensors`` + ``adapter_config.json``, :mod:`magnet_jax.model.lora_files`)
    in ``folder``, written by process 0 (the arrays gathered from every process first)."""
    from jax.experimental import multihost_utils
    host = (multihost_utils.process_allgather(adapters, tiled=True) if jax.process_count() > 1
            else jax.device_get(adapters))
    if jax.process_index() == 0:
        save_adapter(folder, host, config, base=base, architecture=model.architecture(),
                     extra={"step": int(step), "weights": "ema"})
