"""The table of training objectives: ``TrainConfig.objective`` -> its :class:`~magnet_jax.objectives.base.Objective`.

Its names are the families' objective names (:data:`magnet_jax.model.families.OBJECTIVES`); the family table says
which model config and LM class each one trains.
"""
from __future__ import annotations

from magnet_jax.objectives import hybrid, magnet, musicgen
from magnet_jax.objectives.base import Objective

OBJECTIVES: dict[str, Objective] = {o.name: o for o in (magnet.OBJECTIVE, hybrid.OBJECTIVE, musicgen.OBJECTIVE)}


def objective(name: str) -> Objective:
    """The objective called ``name`` (``magnet`` / ``hybrid`` / ``musicgen``)."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}: use one of {', '.join(OBJECTIVES)}") from None
