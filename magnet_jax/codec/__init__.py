"""EnCodec (SEANet autoencoder + residual vector quantization) in JAX / Flax NNX.

``load_encodec(path_or_repo_id) -> Encodec`` (from :mod:`magnet_jax.convert.encodec`); ``Encodec.encode``
/ ``decode`` match the PyTorch references; :mod:`magnet_jax.codec.training_model` is the trainable codec.
"""
from magnet_jax.codec.config import CodecConfig, SeanetConfig
from magnet_jax.codec.encodec import DEFAULT_CHUNK_SECONDS, Encodec, EncodecNet, linear_overlap_add
from magnet_jax.codec.rvq_train import CodebookState, RVQTrainConfig
from magnet_jax.codec.training_model import (
    TrainableEncodec,
    codec_train_forward,
    export_inference_codec,
    init_trainable_codec,
)

# The loaders live in magnet_jax.convert.encodec, which imports this package's modules: re-exported
# lazily, so importing either package first works (an eager import here would be a cycle).
_LOADERS = ("CodecFormatError", "hf_config_to_codec", "load_encodec", "native_config_to_codec", "read_checkpoint")


def __getattr__(name):
    if name in _LOADERS:
        from magnet_jax.convert import encodec
        return getattr(encodec, name)
    raise AttributeError(f"module 'magnet_jax.codec' has no attribute {name!r}")


__all__ = ["load_encodec", "Encodec", "EncodecNet", "CodecConfig", "SeanetConfig", "CodecFormatError",
           "DEFAULT_CHUNK_SECONDS", "hf_config_to_codec", "native_config_to_codec", "read_checkpoint",
           "linear_overlap_add", "CodebookState", "RVQTrainConfig", "TrainableEncodec", "codec_train_forward",
           "export_inference_codec", "init_trainable_codec"]
