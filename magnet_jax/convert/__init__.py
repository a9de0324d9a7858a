"""Checkpoint conversion: released audiocraft / Hugging Face files -> magnet-jax models (cached)."""
from magnet_jax.convert.audiocraft import (
    CheckpointError, config_from_xp_cfg, load_audiocraft_lm, lm_from_state_dict, load_lm_safetensors,
    save_lm_safetensors, to_audiocraft_state_dict)

__all__ = ["CheckpointError", "config_from_xp_cfg", "load_audiocraft_lm", "lm_from_state_dict",
           "load_lm_safetensors", "save_lm_safetensors", "to_audiocraft_state_dict"]
