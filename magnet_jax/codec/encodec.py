"""EnCodec (SEANet autoencoder + residual VQ) inference in JAX, bit-compatible with the references.

Public API (stable)::

    codec = magnet_jax.convert.encodec.load_encodec("facebook/encodec_32khz")   # or a local folder / file
    codes = codec.encode(wav)        # wav float [B, C, N] -> int32 [B, K, T],  T = ceil(N / hop)
    audio = codec.decode(codes)      # -> float32 [B, C, T * hop]   (the references' lengths)
    codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.cardinality, codec.channels

Everything runs as jitted XLA programs with static shapes (one compilation per distinct input
shape).

Inputs longer than ``chunk_seconds`` are coded in chunks (policy above :meth:`Encodec._encode_chunked`).
The encodec-package / HF 48 kHz *segment* scheme changes the result by design: see
:meth:`Encodec.encode_segments` / :meth:`Encodec.decode_segments`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax.codec.config import CodecConfig
from magnet_jax.codec.interface import CodecInterface
from magnet_jax.codec.quantizer import ResidualVQ
from magnet_jax.codec.seanet import Decoder, Encoder, receptive_margin

DEFAULT_CHUNK_SECONDS = 5.0


class EncodecNet(nnx.Module):
    """The parameters: SEANet encoder, decoder and the RVQ codebooks."""

    def __init__(self, config: CodecConfig):
        self.encoder = Encoder(config.encoder)
        self.decoder = Decoder(config.decoder)
        self.quantizer = ResidualVQ(config.dimension, config.bins, config.total_codebooks)



# --- pure functions of (graphdef, state, inputs); jitted per Encodec instance -----------------------

def _f_encode(graphdef, state, x, *, n_q, renorm):
    net = nnx.merge(graphdef, state)
    x, scale = renormalize(x, renorm)
    return net.quantizer.encode(net.encoder(x), n_q), scale


def _f_enc_chunk(graphdef, state, x, h, c, *, start, count):
    net = nnx.merge(graphdef, state)
    y = net.encoder.pre(x)[:, start:start + count]
    if net.encoder.lstm_index is None:
        return y, h, c
    y, (h, c) = net.encoder.layers[net.encoder.lstm_index].run(y, (h, c))
    return y, h, c


def _f_enc_post(graphdef, state, y, *, n_q):
    net = nnx.merge(graphdef, state)
    return net.quantizer.encode(net.encoder.post(y), n_q)


def _f_decode(graphdef, state, codes, scale):
    net = nnx.merge(graphdef, state)
    y = net.decoder(net.quantizer.decode(codes))
    return y if scale is None else y * scale[:, None, None]


def _f_dec_pre(graphdef, state, codes):
    net = nnx.merge(graphdef, state)
    return net.decoder.pre(net.quantizer.decode(codes))


def _f_dec_up(graphdef, state, z, scale, *, start, count):
    net = nnx.merge(graphdef, state)
    y = net.decoder.up(z)[:, start:start + count]
    return y if scale is None else y * scale[:, None, None]


def renormalize(x, renorm: bool):
    """audiocraft ``preprocess`` / encodec ``normalize``: divide by the RMS of the mono mix."""
    if not renorm:
        return x, None
    mono = jnp.mean(x, axis=2)
    scale = jnp.sqrt(jnp.mean(jnp.square(mono), axis=1)) + 1e-8
    return x / scale[:, None, None], scale


class Encodec(CodecInterface):
    """EnCodec inference model. Build with :func:`magnet_jax.convert.encodec.load_encodec`."""

    def __init__(self, config: CodecConfig, net: EncodecNet | None = None):
        self.config = config
        self.net = net if net is not None else EncodecNet(config)
        self.chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS
        self._compiled = None

    @property
    def encoder_margin(self) -> int:
        """Context frames each side of an encoder chunk (bounds the front end's receptive field)."""
        return receptive_margin(list(self.net.encoder.layers)[: self.net.encoder.n_pre], self.hop_length)

    @property
    def decoder_margin(self) -> int:
        """Context frames each side of a decoder chunk (bounds the upsampling stack's receptive field)."""
        return receptive_margin(list(self.net.decoder.layers)[self.net.decoder.n_pre:], self.hop_length,
                                scale=self.hop_length)

    def with_num_codebooks(self, n: int) -> "Encodec":
        """The same weights, encoding with the first ``n`` RVQ levels."""
        other = Encodec(self.config.replace(num_codebooks=n), self.net)
        other.chunk_seconds = self.chunk_seconds
        return other

    # ------------------------------------------------------------------ jit plumbing
    def _fns(self):
        if self._compiled is None:
            graphdef = nnx.graphdef(self.net)
            jit = lambda f, **kw: jax.jit(functools.partial(f, graphdef), **kw)  # noqa: E731
            self._compiled = dict(
                encode=jit(_f_encode, static_argnames=("n_q", "renorm")),
                enc_chunk=jit(_f_enc_chunk, static_argnames=("start", "count")),
                enc_post=jit(_f_enc_post, static_argnames=("n_q",)),
                decode=jit(_f_decode),
                dec_pre=jit(_f_dec_pre),
                dec_up=jit(_f_dec_up, static_argnames=("start", "count")),
                renorm=jax.jit(functools.partial(renormalize, renorm=True)),
            )
        return self._compiled

    def _state(self):
        """The current weights, read at every call (so in-place changes to ``self.net`` are seen)."""
        return nnx.state(self.net)

    def _chunk_frames(self, chunk_seconds) -> int | None:
        cs = self.chunk_seconds if chunk_seconds == "default" else chunk_seconds
        if cs is None:
            return None
        return max(1, int(round(cs * self.frame_rate)))

    def _can_chunk(self) -> bool:
        return "time_group_norm" not in (self.config.encoder.norm, self.config.decoder.norm)

    # ------------------------------------------------------------------ encode
    def encode_with_scale(self, wav, *, chunk_seconds="default"):
        """``wav [B, C, N]`` -> (codes ``int32 [B, K, T]``, scale ``[B]`` or None).

        ``scale`` is the RMS volume the input was divided by (only for ``renormalize`` models);
        pass it to :meth:`decode` to restore the volume.
        """
        fns = self._fns()
        x = self._check_wav(wav)
        n_q, renorm = self.num_codebooks, self.config.renormalize
        frames = -(-x.shape[1] // self.hop_length)
        f = self._chunk_frames(chunk_seconds)
        if f is None or frames <= f or not self._can_chunk():
            return fns["encode"](self._state(), x, n_q=n_q, renorm=renorm)
        scale = None
        if renorm:
            x, scale = fns["renorm"](x)
        return self._encode_chunked(x, f), scale

    # Long audio: chunked coding policy
    # `encode` and `decode` split inputs longer than `chunk_seconds` (default
    # :data:`DEFAULT_CHUNK_SECONDS`; `None` disables chunking) into chunks of `F = round(chunk_seconds *
    # frame_rate)` frames, so peak memory is bounded by the chunk size instead of the clip length:
    #
    # * **encode**: chunk `i` owns frames `[iF, (i+1)F)`. Its convolutional front end (everything
    #   before the LSTM, which has a finite receptive field) runs on the samples of frames
    #   `[iF - M, (i+1)F + M)` (clipped to the clip; all boundaries are multiples of the hop), and only
    #   the owned frames are kept; `M` (:attr:`Encodec.encoder_margin`) bounds the receptive field, so
    #   the kept frames see exactly the samples, and the same clip-edge padding, as in a whole-clip pass.
    #   The LSTM is then run chunk after chunk carrying its state `(h, c)`, which is exactly the
    #   whole-clip recursion. The last conv + RVQ work at the frame rate on the whole sequence (memory
    #   `O(T * lstm_dim)`, ~200 kB per second of audio and example for the 32 kHz model).
    #   **Hence chunked codes equal whole-clip codes for every clip length and chunk size** (tested;
    #   in practice the floats are bitwise identical too). The one exception: models using
    #   `time_group_norm` (the 48 kHz model), whose statistics span the whole time axis, are never
    #   chunked by `encode` / `decode`. With `renormalize` the RMS scale is computed on the whole
    #   clip before chunking. Peak activation memory is a small multiple of `B * chunk_samples *
    #   n_filters * 4` bytes (the widest sample-rate activation), independent of the clip length.
    # * **decode**: the RVQ lookup, first conv and LSTM run on all frames (frame rate); the upsampling
    #   stack runs per chunk of `F` frames with `M` (:attr:`Encodec.decoder_margin`) frames of context
    #   either side, keeping `F * hop` samples. The result equals whole-clip decoding up to float
    #   rounding (tested at 1e-5).
    def _encode_chunked(self, x, f: int):
        fns, hop, n, state = self._fns(), self.hop_length, x.shape[1], self._state()
        total = -(-n // hop)
        m = self.encoder_margin
        enc = self.net.encoder
        if enc.lstm_index is not None:
            h, c = enc.layers[enc.lstm_index].zero_state(x.shape[0])
        else:
            h = c = jnp.zeros((0,), jnp.float32)
        outs = []
        for f0 in range(0, total, f):
            f1 = min(f0 + f, total)
            a, b = max(0, f0 - m), min(total, f1 + m)
            chunk = x[:, a * hop: min(n, b * hop)]
            y, h, c = fns["enc_chunk"](state, chunk, h, c, start=f0 - a, count=f1 - f0)
            outs.append(y)
        y = jnp.concatenate(outs, axis=1)
        return fns["enc_post"](state, y, n_q=self.num_codebooks)

    def encode(self, wav, *, chunk_seconds="default") -> jax.Array:
        """``wav float [B, C, N]`` -> codes ``int32 [B, K, T]`` with ``T = ceil(N / hop)``.

        Long inputs are coded in chunks (see the module docstring; codes are identical to whole-clip
        coding). ``chunk_seconds=None`` forces a single pass.
        """
        return self.encode_with_scale(wav, chunk_seconds=chunk_seconds)[0]

    # ------------------------------------------------------------------ decode
    def decode(self, codes, scale=None, *, chunk_seconds="default") -> jax.Array:
        """codes ``int [B, K, T]`` -> audio ``float32 [B, C, T * hop]``.

        ``K`` may be less than :attr:`total_codebooks` (the first ``K`` levels are summed).
        ``scale`` (from :meth:`encode_with_scale`) multiplies the output, as the references do.
        """
        fns = self._fns()
        codes = jnp.asarray(codes, jnp.int32)
        if codes.ndim != 3:
            raise ValueError(f"expected codes of shape [B, K, T], got {tuple(codes.shape)}")
        if not 1 <= codes.shape[1] <= self.total_codebooks:
            raise ValueError(f"got {codes.shape[1]} codebooks, the model has {self.total_codebooks}")
        if scale is not None:
            scale = jnp.asarray(scale, jnp.float32).reshape(codes.shape[0])
        total, state = codes.shape[2], self._state()
        f = self._chunk_frames(chunk_seconds)
        if f is None or total <= f or not self._can_chunk():
            y = fns["decode"](state, codes, scale)
        else:
            z = fns["dec_pre"](state, codes)
            m, hop = self.decoder_margin, self.hop_length
            outs = []
            for f0 in range(0, total, f):
                f1 = min(f0 + f, total)
                a, b = max(0, f0 - m), min(total, f1 + m)
                outs.append(fns["dec_up"](state, z[:, a:b], scale,
                                          start=(f0 - a) * hop, count=(f1 - f0) * hop))
            y = jnp.concatenate(outs, axis=1)
        return jnp.transpose(y, (0, 2, 1))

    # ------------------------------------------------------------------ encodec-package segments
    @property
    def segment_length(self) -> int | None:
        if self.config.segment is None:
            return None
        return int(self.config.segment * self.sample_rate)

    @property
    def segment_stride(self) -> int | None:
        seg = self.segment_length
        return None if seg is None else max(1, int((1 - self.config.overlap) * seg))

    def encode_segments(self, wav) -> list[tuple[jax.Array, jax.Array | None]]:
        """The encodec package's ``EncodecModel.encode``: a list of ``(codes [B, K, T_i], scale)``,
        one per segment of ``segment`` seconds taken every ``(1 - overlap) * segment`` seconds (a
        single segment when the model has no ``segment``), each normalised on its own."""
        wav = jnp.asarray(wav, jnp.float32)
        n = wav.shape[-1]
        seg, stride = self.segment_length, self.segment_stride
        if seg is None:
            seg = stride = n
        return [self.encode_with_scale(wav[..., o:o + seg], chunk_seconds=None) for o in range(0, n, stride)]

    def decode_segments(self, frames) -> jax.Array:
        """Inverse of :meth:`encode_segments`: decode each segment and cross-fade them with the
        references' triangular-weight linear overlap-add."""
        outs = [self.decode(c, s, chunk_seconds=None) for c, s in frames]
        if self.segment_length is None:
            if len(outs) != 1:
                raise ValueError("a model without segments decodes exactly one frame")
            return outs[0]
        return linear_overlap_add(outs, self.segment_stride)


def linear_overlap_add(frames, stride: int) -> jax.Array:
    """Triangular-weight overlap-add of ``[..., L_i]`` frames placed every ``stride`` samples."""
    frame_length = frames[0].shape[-1]
    total = stride * (len(frames) - 1) + frames[-1].shape[-1]
    t = np.linspace(0, 1, frame_length + 2, dtype=np.float32)[1:-1]
    weight = (np.float32(0.5) - np.abs(t - np.float32(0.5))).astype(np.float32)
    out = jnp.zeros(frames[0].shape[:-1] + (total,), jnp.float32)
    wsum = np.zeros((total,), np.float32)
    for i, fr in enumerate(frames):
        o, length = i * stride, fr.shape[-1]
        out = out.at[..., o:o + length].add(weight[:length] * fr)
        wsum[o:o + length] += weight[:length]
    return out / wsum
