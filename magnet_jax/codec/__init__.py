"""EnCodec (SEANet autoencoder + residual vector quantization) in JAX / Flax NNX.

``Encodec.encode`` / ``decode`` match the PyTorch references; :mod:`magnet_jax.codec.training_model` is the
trainable codec. The checkpoint loaders live one floor up, in :mod:`magnet_jax.convert.encodec`
(``load_encodec(path_or_repo_id) -> Encodec``), as the T5 loader lives in :mod:`magnet_jax.convert.t5`.
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

__all__ = ["Encodec", "EncodecNet", "CodecConfig", "SeanetConfig", "DEFAULT_CHUNK_SECONDS", "linear_overlap_add",
           "CodebookState", "RVQTrainConfig", "TrainableEncodec", "codec_train_forward", "export_inference_codec",
           "init_trainable_codec"]
