"""The bundled model at run time: its name and where its weights live (``lm/ codec/ t5/``,
:mod:`magnet_jax.bundled.package`). Its architecture is the ``bundled`` preset (:mod:`magnet_jax.presets`), its
training config ``configs/magnet.py:bundled`` (:mod:`magnet_jax.configs`).
"""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"      # lm/ codec/ t5/ (magnet_jax.bundled.package)
NAME = "bundled"
