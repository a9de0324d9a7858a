"""Trainable EnCodec: the contract between the codec model and the codec trainer.

* ``init_trainable_codec(config, rng, *, rvq=RVQTrainConfig()) -> TrainableEncodec``: SEANet with
  weight norm as a parametrisation (``g`` and ``v`` per conv, ``w = g * v / ||v||`` in the forward),
  PyTorch's default initialisation (so ``g = ||v||`` at step 0), and the RVQ EMA buffers as
  :class:`CodebookState` variables. All trainable weights are ``nnx.Param``, so
  ``graphdef, params, codebook_state = nnx.split(model, nnx.Param, CodebookState)``.
* ``codec_train_forward(graphdef, params, codebook_state, wav [B, C, N] f32, rng, *, train,
  quantizer_dropout, decoder_only=False, phase_from_input=True)``
  ``-> (recon [B, C, N], aux)``, a pure function (jit / grad it). ``aux``:
  ``commit_loss`` (scalar: audiocraft's penalty, the *mean* over the used levels of
  ``commitment_weight * mse``; 0 when not training, as audiocraft), ``codes`` int32 [B, K, T]
  (levels >= ``n_q`` are computed but unused), ``perplexity`` [K] (0 for unused levels),
  ``codebook_state`` (the updated ``CodebookState`` pytree when ``train``: k-means init, EMA,
  dead-code replacement; the input unchanged otherwise) and ``n_q`` (int32 scalar, levels used:
  uniform in [1, K] with ``quantizer_dropout`` during training, else K). Gradients flow from
  ``recon`` to the encoder through the straight-through estimator; ``codebook_state`` carries none.
* ``export_inference_codec(graphdef, params, codebook_state) -> Encodec``: weight norm fused, the
  EMA codebooks as the inference codebooks (the fast encode / decode path).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax.codec.config import CodecConfig
from magnet_jax.codec.encodec import Encodec, EncodecNet, renormalize
from magnet_jax.codec.frame_codec import FrameCodec, FrameCodecConfig, FrameCodecNet, FrameDecoder, FrameEncoder
from magnet_jax.codec.rvq_train import CodebookState, RVQTrainConfig, TrainableRVQ
from magnet_jax.codec.seanet import LSTM, ConvTranspose1d, Decoder, Encoder, _ConvBase

__all__ = ["CodebookState", "RVQTrainConfig", "TrainableEncodec", "init_trainable_codec", "codec_train_forward",
           "export_inference_codec", "inference_params"]


class TrainableEncodec(nnx.Module):
    """SEANet encoder / decoder (weight-norm parametrised) + EMA residual VQ; or, for a
    :class:`FrameCodecConfig`, the frame codec's encoder / decoder with the same RVQ."""

    def __init__(self, config: CodecConfig | FrameCodecConfig, rvq: RVQTrainConfig, seed: int = 0):
        self.config, self.rvq = config, rvq
        if isinstance(config, FrameCodecConfig):
            rngs = nnx.Rngs(seed)
            self.encoder, self.decoder = FrameEncoder(config, rngs), FrameDecoder(config, rngs)
        else:
            self.encoder = Encoder(config.encoder, trainable=True)
            self.decoder = Decoder(config.decoder, trainable=True)
        self.quantizer = TrainableRVQ(config.dimension, config.bins, config.total_codebooks, rvq)


def _uniform(key, shape, bound):
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def init_trainable_codec(config: CodecConfig, rng, *, rvq: RVQTrainConfig = RVQTrainConfig()) -> TrainableEncodec:
    """A freshly initialised trainable codec (PyTorch default init of every SEANet layer; the frame
    codec's own truncated-normal init)."""
    keys = iter(jax.random.split(rng, 4096))
    seed = int(jax.random.randint(jax.random.fold_in(rng, 1), (), 0, 2**31 - 1))   # the frame codec's init
    model = TrainableEncodec(config, rvq, seed=seed)
    for _, m in nnx.iter_graph(model):
        if isinstance(m, _ConvBase):
            w = m.v if m.weight_norm else m.weight
            shape = w[...].shape
            # torch fan_in = weight.size(1) * kernel: Cin*K for a conv ([Cout, Cin, K]), Cout*K for a
            # transposed conv ([Cin, Cout, K]); kaiming_uniform(a=sqrt(5)) and the bias use 1/sqrt(fan_in)
            fan_in = shape[1] * shape[2] if isinstance(m, ConvTranspose1d) else shape[0] * shape[1]
            bound = 1.0 / math.sqrt(fan_in)
            w[...] = _uniform(next(keys), shape, bound)
            if m.weight_norm:  # torch weight_norm initialises g = ||v||
                m.g[...] = jnp.sqrt(jnp.sum(jnp.square(m.v[...]), axis=m.norm_axes, keepdims=True))
            m.bias[...] = _uniform(next(keys), m.bias[...].shape, bound)
            if m.has_gn:
                m.gn_scale[...] = jnp.ones_like(m.gn_scale[...])
        elif isinstance(m, LSTM):
            bound = 1.0 / math.sqrt(m.dim)
            for layer in range(m.num_layers):
                m.w_ih[layer][...] = _uniform(next(keys), (m.dim, 4 * m.dim), bound)
                m.w_hh[layer][...] = _uniform(next(keys), (m.dim, 4 * m.dim), bound)
                m.b[layer][...] = (_uniform(next(keys), (4 * m.dim,), bound)
                                   + _uniform(next(keys), (4 * m.dim,), bound))  # b_ih + b_hh
    q = model.quantizer
    if not rvq.kmeans_init:  # audiocraft uniform_init: kaiming_uniform (a=0), fan_in = dim
        embed = _uniform(next(keys), q.embed[...].shape, math.sqrt(6.0 / q.dim))
        q.embed[...] = embed
        q.embed_avg[...] = embed
        q.inited[...] = jnp.ones_like(q.inited[...])
    return model


def codec_train_forward(graphdef, params, codebook_state, wav, rng, *, train: bool, quantizer_dropout: bool,
                        decoder_only: bool = False, phase_from_input: bool = True):
    """See the module docstring (the trainer's contract). ``decoder_only``: the encoder and the codebooks are
    frozen (codes looked up, no codebook update, no gradient into the encoder), so every clip keeps its codes.
    ``phase_from_input=False`` (frame codec, ``phase="griffin_lim"``): training decodes through the same
    Griffin-Lim as inference instead of putting the predicted magnitude on the input's phase."""
    model = nnx.merge(graphdef, params, codebook_state)
    cfg = model.config
    wav = jnp.asarray(wav, jnp.float32)
    n = wav.shape[-1]
    x, scale = renormalize(jnp.transpose(wav, (0, 2, 1)), cfg.renormalize)
    k_drop, k_q = jax.random.split(rng)
    total = cfg.total_codebooks
    if train and quantizer_dropout:
        n_q = jax.random.randint(k_drop, (), 1, total + 1, jnp.int32)
    else:
        n_q = jnp.asarray(total, jnp.int32)
    q, codes, commit, ppl, buffers = model.quantizer(model.encoder(x), n_q, k_q, train=train and not decoder_only)
    if decoder_only:
        q, commit = jax.lax.stop_gradient(q), jnp.zeros((), jnp.float32)
    if isinstance(cfg, FrameCodecConfig) and cfg.phase == "griffin_lim" and train and phase_from_input:
        y = model.decoder(q, reference=x)[:, :n]   # the input's phase under the predicted magnitude
    else:
        y = model.decoder(q)[:, :n]  # audiocraft EncodecModel.forward trims to the input length
    if scale is not None:
        y = y * scale[:, None, None]
    new_state = jax.tree.map(lambda a: a, codebook_state)  # fresh variables, same structure
    nnx.replace_by_pure_dict(new_state, {"quantizer": buffers})
    aux = dict(commit_loss=commit, codes=codes, perplexity=ppl, codebook_state=new_state, n_q=n_q)
    return jnp.transpose(y, (0, 2, 1)), aux


def inference_params(model: TrainableEncodec) -> dict:
    """Pure param dict of the inference :class:`EncodecNet`: weight norm fused, EMA codebooks."""
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    for path, m in nnx.iter_graph(model):
        if isinstance(m, _ConvBase) and m.weight_norm:
            node = pure
            for key in path:
                node = node[key]
            del node["g"], node["v"]
            node["weight"] = m.kernel()
    pure["quantizer"] = {"embed": model.quantizer.embed[...]}
    return jax.tree.map(lambda a: np.asarray(a, np.float32), pure)


def export_inference_codec(graphdef, params, codebook_state) -> Encodec | FrameCodec:
    """The trained codec as the inference :class:`Encodec` (fused weights, fast encode / decode), or
    :class:`FrameCodec` for a frame codec."""
    model = nnx.merge(graphdef, params, codebook_state)
    cfg = model.config.replace(num_codebooks=model.config.total_codebooks)
    frame = isinstance(cfg, FrameCodecConfig)
    net = FrameCodecNet(cfg) if frame else EncodecNet(cfg)
    state = nnx.state(net)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, inference_params(model)))
    nnx.update(net, state)
    return FrameCodec(cfg, net) if frame else Encodec(cfg, net)
