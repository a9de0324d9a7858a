"""What the train step asks of a training objective (one per family: ``objectives/{magnet,hybrid,musicgen}.py``).

The step (:mod:`magnet_jax.training.step`) looks the objective up by ``TrainConfig.objective`` in
:data:`magnet_jax.objectives.table.OBJECTIVES` and only calls these three members; it never tests a family name.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

import jax


class StepDraws(Protocol):
    """The step-config fields an objective's draws read (``training.config.StepConfig`` has them)."""
    cfg_dropout: float           # probability of nulling the text (classifier-free guidance)
    per_sample_stage: bool       # one stage per sample instead of one per batch (where the objective has a choice)
    per_sample_cfg: bool         # one CFG-dropout draw per sample instead of one per batch
    stage_weights: tuple         # relative draw weight per stage (MAGNeT); () = uniform


class Objective(Protocol):
    """A training objective: the host-free draws of one global batch, and its loss on the LM."""

    name: str
    # The keys of a prepared batch that the loss reads. With gradient accumulation the step cuts each of them into
    # micro-batches along its first axis; one that is a scalar (one draw for the whole batch, such as MAGNeT's
    # per-batch stage) goes whole to every micro-batch.
    PER_SAMPLE_KEYS: tuple[str, ...]

    def prepare(self, batch: Mapping[str, Any], key: jax.Array, *, model_config, step_config: StepDraws,
                stage=None) -> dict:
        """``batch`` (``codes`` [B, K, T], ``padding_mask`` [B, T], ``text_mask`` [B, S]) -> the model inputs, the
        loss targets and weights, the text mask after CFG dropout, and the ``stage`` / ``mask_rate`` metrics.
        ``stage`` (evaluation) forces that codebook and turns CFG dropout off."""

    def loss(self, lm, prepared: dict, text_hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(token-mean loss, number of tokens)`` of the LM on a :meth:`prepare` result (an optional
        ``prepared["key_mask"]`` [B, S] is the whole batch's cross-attention key mask, for a micro-batch)."""
