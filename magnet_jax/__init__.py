"""magnet-jax: MAGNeT (Ziv et al., ICLR 2024) in JAX / Flax NNX.

Modules (one paper concept each):
  model      MagnetLM: the span-masked transformer with restricted attention (``magnet_jax.model``)
  masking    training objective: cosine mask rate, span LUT, span masks, masked cross-entropy
  decoding   iterative span decoding as one jitted program (generate / continue / infill)
  codec      EnCodec (SEANet + RVQ) encode / decode
  text       T5 encoder + tokenizer with the reference conditioner semantics
  convert    audiocraft / Hugging Face checkpoints -> NNX params (cached)
  data       offline EnCodec tokenization to TFDS, Grain input pipeline
  training   sharded train step, checkpoints, multi-host
"""
__version__ = "0.1.0"
