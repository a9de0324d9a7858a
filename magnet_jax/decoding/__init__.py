"""MAGNeT iterative span decoding (audiocraft ``MagnetLMModel.generate``) as one jitted program.

``config`` (knobs) · ``schedule`` (host float32 per-step schedule) · ``sampling`` (one step's tokens) ·
``spans`` (which units a step re-masks, how they are scored) · ``loop`` (the model-agnostic loop over a
typed state) · ``inputs`` (checks, prompt / infill padding) · ``guidance`` (CFG's pair layout, one for every
program) · ``model_logits`` (the LM + CFG as the loop's
``logits_fn``) · ``rescoring`` (an external MusicGen's probabilities in the re-masking confidences, Eq. 5) ·
``generate`` (the jitted program + the public API).
"""
from magnet_jax.decoding.config import GenerationConfig, first_stage_steps
from magnet_jax.decoding.loop import DecodeState, Trace, decode_loop
from magnet_jax.decoding.magnet import generate, generate_with_trace
from magnet_jax.decoding.model_logits import cfg_logits_fn
from magnet_jax.decoding.rescoring import mix_confidences, rescorer_probs_fn
from magnet_jax.decoding.sampling import sample_tokens
from magnet_jax.decoding.schedule import mask_rates, stage_schedule, torch_linspace_f32
from magnet_jax.decoding.spans import DONT_REMASK_SCORE

__all__ = ["GenerationConfig", "first_stage_steps", "generate", "generate_with_trace", "cfg_logits_fn",
           "decode_loop", "DecodeState", "Trace", "sample_tokens", "stage_schedule", "mask_rates",
           "torch_linspace_f32", "DONT_REMASK_SCORE", "mix_confidences", "rescorer_probs_fn"]
