"""Held-out LM loss per stage of a model on a tokenized dataset's eval split, computed as the trainer's evaluation
(:func:`magnet_jax.training.loop.train`: the first ``eval_batches`` unshuffled batches, the eval step's fixed masks
``PRNGKey(1000 + i)``), so that the loss before fine-tuning and after it are measured alike."""
from __future__ import annotations

import jax
from flax import nnx

from magnet_jax import sharding
from magnet_jax.convert.t5 import load_text_stack
from magnet_jax.data.input_pipeline import data_source, find_builder_dir, make_dataset
from magnet_jax.training.config import TrainConfig
from magnet_jax.training.loop import BATCH_KEYS, eval_batches, heldout_losses, initial_model
from magnet_jax.training.step import make_eval_step


def heldout_loss(cfg: TrainConfig, model: str, batch_size: int | None = None) -> dict:
    """``{"eval_loss_stage{k}": nats, "eval_loss": mean}`` of the LM at ``model`` (hub id / folder) on
    ``cfg.data.eval_split`` of ``cfg.data.data_dir``, in batches of ``batch_size`` (default the training batch);
    ``{}`` when the split has no full batch. On one device (the held-out sets are small)."""
    mcfg, d, lp = cfg.model, cfg.data, cfg.loop
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])    # one device: any eval batch size
    builder_dir = find_builder_dir(d.data_dir, d.dataset_name)
    tokenizer, t5 = load_text_stack(cfg.text.name, mcfg.text_dim)
    t5_graphdef, t5_state = nnx.split(t5.module)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    t5_params = jax.device_put(nnx.to_pure_dict(t5_state), replicated)
    graphdef, params, specs = initial_model(model, lp.seed, mcfg, mesh)
    ds = make_dataset(data_source(builder_dir, d.eval_split), segment_frames=mcfg.segment_frames, pad_id=mcfg.mask_id,
                      tokenizer=tokenizer, text_len=int(cfg.text.max_length), builder_dir=builder_dir,
                      batch_size=batch_size or d.batch_size, seed=lp.seed, min_segment_ratio=d.min_segment_ratio,
                      sample_on_duration=d.sample_on_duration, merge_text_p=d.merge_text_p,
                      drop_desc_p=d.drop_desc_p, drop_other_p=d.drop_other_p, word_dropout=0.0, train=False,
                      process_index=0, process_count=1, worker_count=0)
    batches = eval_batches(iter(ds), lp.eval_batches)
    b_sh = sharding.batch_shardings(BATCH_KEYS, mesh)
    eval_fn = make_eval_step(graphdef, t5_graphdef, mcfg, specs, mesh, BATCH_KEYS, cfg.step)
    with sharding.use_mesh(mesh):
        return heldout_losses(eval_fn, params, batches, t5_params, b_sh)
