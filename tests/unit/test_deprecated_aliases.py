"""Moved public names keep working for one release: the old path gives the same object, with a DeprecationWarning
that names the new one."""
import importlib

import pytest

ALIASES = [
    ("magnet_jax.pipeline", "MagnetPipeline", "magnet_jax.pipelines", "MagnetPipeline"),
    ("magnet_jax.pipeline", "MusicGenPipeline", "magnet_jax.pipelines", "MusicGenPipeline"),
    ("magnet_jax.musicgen", "generate", "magnet_jax.decoding.musicgen", "generate"),
    ("magnet_jax.musicgen", "MusicGenGenerationConfig", "magnet_jax.decoding.config", "MusicGenGenerationConfig"),
    ("magnet_jax.musicgen", "musicgen_loss", "magnet_jax.objectives.musicgen", "musicgen_loss"),
    ("magnet_jax.masking", "span_mask", "magnet_jax.objectives.magnet", "span_mask"),
    ("magnet_jax.masking", "cfg_dropout", "magnet_jax.objectives.magnet", "cfg_dropout"),
]


@pytest.mark.parametrize("old, name, new, new_name", ALIASES)
def test_old_name_warns_and_is_the_new_object(old, name, new, new_name):
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated: use {new}\.{new_name}"):
        got = getattr(importlib.import_module(old), name)
    assert got is getattr(importlib.import_module(new), new_name)


def test_from_import_of_an_old_name_warns():
    with pytest.warns(DeprecationWarning, match="magnet_jax.pipelines.MagnetPipeline"):
        from magnet_jax.pipeline import MagnetPipeline  # noqa: F401


def test_unknown_old_name_is_an_attribute_error():
    with pytest.warns(DeprecationWarning), pytest.raises(AttributeError, match="no_such_name"):
        importlib.import_module("magnet_jax.masking").no_such_name
