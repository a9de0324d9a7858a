"""EnCodec (SEANet autoencoder + residual vector quantization) in JAX / Flax NNX.

``load_encodec(path_or_repo_id) -> Encodec`` reads transformers, audiocraft-native and encodec-package
checkpoints; ``Encodec.encode(wav [B, C, N]) -> int32 [B, K, T]`` and ``Encodec.decode(codes) ->
float32 [B, C, T * hop]`` match the PyTorch references (identical codes, audio within 1e-4).
See :mod:`magnet_jax.codec.encodec` for the chunked long-audio policy.
"""
from .config import CodecConfig, SeanetConfig
from .encodec import DEFAULT_CHUNK_SECONDS, Encodec, EncodecNet, linear_overlap_add
from .load import CodecFormatError, hf_config_to_codec, load_encodec, native_config_to_codec, read_checkpoint

__all__ = ["load_encodec", "Encodec", "EncodecNet", "CodecConfig", "SeanetConfig", "CodecFormatError",
           "DEFAULT_CHUNK_SECONDS", "hf_config_to_codec", "native_config_to_codec", "read_checkpoint",
           "linear_overlap_add"]
