"""Held-out LM loss per stage of a model on a tokenized dataset's eval split, computed as the trainer's evaluation
(:func:`magnet_jax.training.loop.train`: the first ``eval_batches`` unshuffled batches, the eval step's fixed masks
``PRNGKey(1000 + i)``), so that the loss before fine-tuning and after it are measured alike; and the same loss
with each clip given another clip's description or none (:func:`text_losses`: how much the LM uses its text)."""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from magnet_jax import sharding
from magnet_jax.convert.t5 import load_text_stack
from magnet_jax.data.input_pipeline import find_builder_dir
from magnet_jax.training.config import TrainConfig
from magnet_jax.training.loop import BATCH_KEYS, eval_batches, heldout_losses, initial_model, lm_dataset
from magnet_jax.training.step import make_eval_step

# The description each held-out clip is scored with: its own, another clip's (the batch's descriptions rolled by
# one), or none (the zero text mask: the condition CFG dropout trains and guidance subtracts).
TEXTS = {
    "own": lambda b: b,
    "other": lambda b: {**b, "text_ids": np.roll(b["text_ids"], 1, 0), "text_mask": np.roll(b["text_mask"], 1, 0)},
    "null": lambda b: {**b, "text_mask": np.zeros_like(b["text_mask"])},
}


def text_losses(cfg: TrainConfig, model: str, batch_size: int | None = None, texts=tuple(TEXTS)) -> dict:
    """``{text: {"eval_loss_stage{k}": nats, "eval_loss": mean}}`` of the LM at ``model`` (hub id / folder; ""
    = the trainer's seeded random init) on ``cfg.data.eval_split`` of ``cfg.data.data_dir``, in batches of
    ``batch_size`` (default the training batch), for each of ``texts`` (:data:`TEXTS`); ``{}`` per text when the
    split has no full batch. On one device (the held-out sets are small)."""
    mcfg, d, lp = cfg.model, cfg.data, cfg.loop
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])    # one device: any eval batch size
    builder_dir = find_builder_dir(d.data_dir, d.dataset_name)
    tokenizer, t5 = load_text_stack(cfg.text.name, mcfg.text_dim)
    t5_graphdef, t5_state = nnx.split(t5.module)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    t5_params = jax.device_put(nnx.to_pure_dict(t5_state), replicated)
    graphdef, params, specs = initial_model(model, lp.seed, mcfg, mesh)
    batches = eval_batches(iter(lm_dataset(cfg, builder_dir, tokenizer, d.eval_split, False, batch_size or 0)),
                           lp.eval_batches)
    b_sh = sharding.batch_shardings(BATCH_KEYS, mesh)
    eval_fn = make_eval_step(graphdef, t5_graphdef, mcfg, specs, mesh, BATCH_KEYS, cfg.step)
    with sharding.use_mesh(mesh):
        return {t: heldout_losses(eval_fn, params, [TEXTS[t](b) for b in batches], t5_params, b_sh) for t in texts}


def heldout_loss(cfg: TrainConfig, model: str, batch_size: int | None = None) -> dict:
    """``{"eval_loss_stage{k}": nats, "eval_loss": mean}``: :func:`text_losses` with each clip's own description."""
    return text_losses(cfg, model, batch_size, ("own",))["own"]
