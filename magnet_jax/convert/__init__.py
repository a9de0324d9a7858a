"""Checkpoint conversion: audiocraft / Hugging Face / encodec files <-> magnet-jax models (torch-free)."""
from magnet_jax.convert._torch import TorchFileError, load_torch_file
from magnet_jax.convert.audiocraft import (
    load_audiocraft_checkpoint,
    load_audiocraft_lm,
    load_lm_safetensors,
    save_lm_safetensors,
)
from magnet_jax.convert.audiocraft_export import export_audiocraft
from magnet_jax.convert.audiocraft_xp import ExportFacts
from magnet_jax.convert.checkpoint import CheckpointError, LoadedCheckpoint
from magnet_jax.convert.lm_params import lm_from_state_dict, to_audiocraft_state_dict
from magnet_jax.convert.magnet import config_from_xp_cfg
from magnet_jax.convert.t5 import load_t5_encoder, load_text_stack, params_from_hf, read_hf_t5_weights

__all__ = ["CheckpointError", "ExportFacts", "LoadedCheckpoint", "TorchFileError", "config_from_xp_cfg",
           "export_audiocraft", "load_audiocraft_checkpoint", "load_audiocraft_lm", "lm_from_state_dict",
           "load_lm_safetensors", "load_t5_encoder", "load_text_stack", "load_torch_file", "params_from_hf",
           "read_hf_t5_weights", "save_lm_safetensors", "to_audiocraft_state_dict"]
