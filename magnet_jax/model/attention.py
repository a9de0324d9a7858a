"""Scaled dot-product attention behind one call, with the implementation chosen by ``attention_impl``.

* ``"xla"`` (default; the parity reference): einsums + a masked float32 softmax, any mask. The
  restricted-context band (:class:`~magnet_jax.model.attention_masks.BandMask`, one per batch) runs on the
  band only (:func:`attention_band`: query blocks against their key window, O(T (block + 2 c)) instead
  of O(T^2); a traced stage picks it or full attention with ``lax.cond``); a per-sample band is expanded
  to a dense [B, 1, T, T] mask.
* ``"dot_product_attention"``: ``jax.nn.dot_product_attention``. On a CUDA GPU with bf16 / fp16 inputs
  whose shapes cuDNN takes, ``implementation="cudnn"`` (cuDNN flash attention); elsewhere
  ``implementation="xla"``. The band goes in as ``local_window_size=(c, c)``; cuDNN has no symmetric
  window (only a causal left window), so there the band is a broadcast [1, 1, T, T] mask (cuDNN's bias
  input) and the kernel is still flash attention.
* ``"splash"`` (alias ``"pallas"``): the TPU Pallas splash-attention kernel, the band as a ``LocalMask``
  (block-sparse: blocks outside the window are skipped) and stage 0 as a ``FullMask``; a traced stage picks
  one of the two kernels with ``lax.cond``. Sequences are padded to the kernel's block size, padding
  excluded with segment ids. Under a mesh it runs per shard (``shard_map`` over batch and heads).
* ``"auto"``: splash on TPU, dot_product_attention on GPU, xla elsewhere.

"The backend" is jax's default backend, or the one :func:`target_backend` names while a program is traced for
another platform (ahead-of-time compilation for a TPU topology on a CPU host: ``benchmarks/tpu_compile.py``).

The kernels serve the self-attention masks they can express (none / the band); any other dense mask
(text keys, causal with a cache offset) takes the dense path of the same implementation ("splash": xla).
Every implementation returns zeros for a query row with no allowed key.
"""
from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.model.attention_masks import BandMask, dense_mask
from magnet_jax.model.config import ATTENTION_IMPLS as IMPLS

_HALF = (jnp.bfloat16, jnp.float16)
SPLASH_BLOCK = 128
_TARGET: list[str] = []          # target_backend()'s stack


@contextlib.contextmanager
def target_backend(backend: str):
    """Models built and programs traced inside this context are for ``backend`` ("tpu", "gpu", "cpu"), not for
    jax's default backend: ``auto`` resolves for it, ``splash`` is accepted for "tpu", and the CPU-only batch
    chunking of :func:`attention_xla` is off elsewhere. For ahead-of-time compilation for devices this host does
    not have (``jax.experimental.topologies``; ``benchmarks/tpu_compile.py``)."""
    _TARGET.append(backend)
    try:
        yield backend
    finally:
        _TARGET.pop()


def current_backend() -> str:
    """The backend programs are traced for: the innermost :func:`target_backend`, else jax's default backend."""
    return _TARGET[-1] if _TARGET else jax.default_backend()


def resolve_impl(impl: str, backend: str | None = None) -> str:
    """The concrete implementation for ``impl`` on ``backend`` (default: :func:`current_backend`); raises a
    one-line ValueError for an unknown name or one the backend cannot run."""
    if impl not in IMPLS:
        raise ValueError(f"attention_impl={impl!r} is not one of {', '.join(IMPLS)}")
    backend = backend or current_backend()
    if impl == "auto":
        return {"tpu": "splash", "gpu": "dot_product_attention"}.get(backend, "xla")
    if impl == "pallas":
        impl = "splash"
    if impl == "splash" and backend != "tpu":
        raise ValueError(f"attention_impl='splash' needs a TPU (the backend is {backend!r}); "
                         "use 'auto', 'xla' or 'dot_product_attention'")
    return impl


def attention(q, k, v, mask=None, impl: str = "xla", *, interpret: bool = False):
    """softmax(q k^T / sqrt(d) [masked]) v. q [B,Tq,H,D], k/v [B,Tk,H,D]; ``mask``: None, a
    :class:`BandMask`, or a bool array broadcastable to [B,H,Tq,Tk] (True = attend). ``impl`` is a resolved
    name (see :func:`resolve_impl`; ``interpret`` runs splash in Pallas interpret mode, e.g. on CPU)."""
    if impl == "xla":
        if isinstance(mask, BandMask) and not mask.per_sample and 2 * mask.context + 1 < q.shape[1]:
            if mask.full is None:
                return attention_band(q, k, v, mask.context)
            return band_or_full(q, k, v, mask.full, mask.context)
        # the band always keeps the diagonal: no empty rows to guard
        return attention_xla(q, k, v, dense_mask(mask), empty_rows=not isinstance(mask, BandMask))
    if impl == "dot_product_attention":
        return attention_dpa(q, k, v, mask)
    if impl == "splash":
        if mask is None or isinstance(mask, BandMask):
            return attention_splash(q, k, v, mask, interpret=interpret)
        return attention_xla(q, k, v, mask)
    raise ValueError(f"attention impl {impl!r} is not resolved; pass it through resolve_impl first")


# XLA:CPU: score tensors above 4x this many elements are computed in batch chunks of at most this many
# (see attention_xla; at 8-32 MB chunking measured even or slower, at 64 MB and up faster)
CPU_SCORE_CHUNK = 1 << 21


def attention_xla(q, k, v, mask=None, empty_rows: bool = True):
    """The reference path. A query row with no allowed key returns zeros (``empty_rows=False``: the caller
    guarantees every row has a key, and the two guarding selects are skipped; same values). Computed in the
    [B, H, T, D] layout (leading batch dims: plain batched GEMMs, ~1.6x faster on CPU).

    On CPU a [B, H, Tq, Tk] score tensor larger than ``4 * CPU_SCORE_CHUNK`` elements (32 MB) is computed in
    batch chunks of at most ``CPU_SCORE_CHUNK`` (``lax.map``): the scores, their softmax and the value product
    then stay in cache instead of streaming 64-128 MB through memory per pass (full attention of 16 rows x 4
    heads x 500 frames, the decoding's CFG batch at batch 8: ~110 -> ~65 ms). Its gradient recomputes each
    chunk's forward with its VJP (autodiff of the ``lax.map`` stacked the chunks' residuals and ran ~2x slower
    than the unchunked gradient). Each row's arithmetic is unchanged. Accelerators get the whole batch at once."""
    if _chunk_rows(q, k) == q.shape[0]:
        return _attention_dense(q, k, v, mask, empty_rows)
    return _attention_chunked(q, k, v, None if mask is None else jnp.asarray(mask), empty_rows)


def _batch_chunks(fn, q, k, v, mask, *rest):
    """``fn(q, k, v, mask, *rest)`` over chunks of the batch (``lax.map``); a mask without the batch dim is
    shared. ``fn`` returns a pytree of [chunk, ...] arrays; the result is re-joined along the batch."""
    B = q.shape[0]
    bb = _chunk_rows(q, k)
    split = lambda x: x.reshape((B // bb, bb) + x.shape[1:])                  # noqa: E731
    per_row = mask is not None and mask.ndim == 4 and mask.shape[0] == B
    xs = (split(q), split(k), split(v), split(mask) if per_row else None, tuple(split(r) for r in rest))
    out = jax.lax.map(lambda a: fn(a[0], a[1], a[2], a[3] if per_row else mask, *a[4]), xs)
    return jax.tree.map(lambda o: o.reshape((B,) + o.shape[2:]), out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attention_chunked(q, k, v, mask, empty_rows):
    return _batch_chunks(lambda q, k, v, m: _attention_dense(q, k, v, m, empty_rows), q, k, v, mask)


def _attention_chunked_fwd(q, k, v, mask, empty_rows):
    return _attention_chunked(q, k, v, mask, empty_rows), (q, k, v, mask)


def _dense_vjp(q, k, v, mask, empty_rows, g):
    """(dq, dk, dv) of the dense attention at cotangent ``g``: its forward recomputed, a batch chunk at a time
    where the scores are large on CPU."""
    def one(q, k, v, m, g):
        return jax.vjp(lambda q, k, v: _attention_dense(q, k, v, m, empty_rows), q, k, v)[1](g)
    if _chunk_rows(q, k) == q.shape[0]:
        return one(q, k, v, mask, g)
    return _batch_chunks(one, q, k, v, mask, g)


def _attention_chunked_bwd(empty_rows, res, g):
    q, k, v, mask = res
    return (*_dense_vjp(q, k, v, mask, empty_rows, g), None)


_attention_chunked.defvjp(_attention_chunked_fwd, _attention_chunked_bwd)


def _chunk_rows(q, k) -> int:
    """Rows per chunk of q [B, Tq, H, D] against k [B, Tk, H, D]: B up to 4 * CPU_SCORE_CHUNK score elements (and
    off the CPU), else the largest divisor of B whose scores fit CPU_SCORE_CHUNK (at least 1)."""
    B, per_row = q.shape[0], q.shape[2] * q.shape[1] * k.shape[1]
    if B == 1 or B * per_row <= 4 * CPU_SCORE_CHUNK or current_backend() != "cpu":
        return B
    return max(d for d in range(1, B + 1) if B % d == 0 and (d == 1 or d * per_row <= CPU_SCORE_CHUNK))


def _attention_dense(q, k, v, mask, empty_rows):
    scale = 1.0 / math.sqrt(q.shape[-1])
    qh, kh, vh = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))
    s = jnp.einsum("bhqd,bhkd->bhqk", qh * jnp.asarray(scale, q.dtype), kh, preferred_element_type=jnp.float32)
    guard = mask is not None and empty_rows
    if mask is not None:
        s = jnp.where(mask, s, -jnp.inf)
    if guard:
        any_key = jnp.any(mask, axis=-1, keepdims=True)
        s = jnp.where(any_key, s, 0.0)
    w = jax.nn.softmax(s, axis=-1)
    if guard:
        w = jnp.where(any_key, w, 0.0)
    return jnp.swapaxes(jnp.einsum("bhqk,bhkd->bhqd", w.astype(v.dtype), vh), 1, 2)


BAND_BLOCK = 32


def attention_band(q, k, v, context: int, block: int = BAND_BLOCK):
    """Self-attention restricted to ``|t_q - t_k| <= context``, computed on the band only. The queries are
    cut into blocks of ``block`` (>= ``context``) frames; each block scores the ``block + 2 context`` keys
    around it (its own block and ``context`` frames of each neighbour, built by slicing and concatenating:
    no gather, so the gradient is slices too). Same values as :func:`attention_xla` with the dense band
    (up to float summation order); at T = 500, c = 5 about 6x faster forward + backward on CPU."""
    B, T, H, D = q.shape
    c, block = context, max(block, context)
    nb = -(-T // block)
    Tp = nb * block
    qh, kh, vh = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))                   # [B, H, T, D]
    qb = jnp.pad(qh, ((0, 0), (0, 0), (0, Tp - T), (0, 0))).reshape(B, H, nb, block, D)

    def windows(x):                                # [B, H, nb, block + 2c, D]: keys block_start - c .. block_end + c
        xp = jnp.pad(x, ((0, 0), (0, 0), (c, Tp - T + c), (0, 0)))
        blocks = lambda off: xp[:, :, off:off + Tp].reshape(B, H, nb, block, D)  # noqa: E731
        return jnp.concatenate([blocks(0)[:, :, :, :c], blocks(c), blocks(2 * c)[:, :, :, block - c:]], axis=3)

    scale = jnp.asarray(1.0 / math.sqrt(D), q.dtype)
    s = jnp.einsum("bhnqd,bhnkd->bhnqk", qb * scale, windows(kh), preferred_element_type=jnp.float32)
    r, j = np.arange(block)[:, None], np.arange(block + 2 * c)[None, :]
    key_pos = np.arange(nb)[:, None, None] * block - c + j                    # [nb, 1, W]
    allowed = (np.abs(r + c - j) <= c) & (key_pos >= 0) & (key_pos < T)     # [nb, block, W], static
    allowed |= (np.arange(nb)[:, None, None] * block + r >= T)               # padding queries: no empty row
    w = jax.nn.softmax(jnp.where(allowed, s, -jnp.inf), axis=-1)
    o = jnp.einsum("bhnqk,bhnkd->bhnqd", w.astype(v.dtype), windows(vh)).reshape(B, H, Tp, D)[:, :, :T]
    return jnp.swapaxes(o, 1, 2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def band_or_full(q, k, v, full, context: int):
    """Full attention where ``full`` (a traced bool scalar: stage 0) else the band, with ``lax.cond``.

    Its gradient recomputes the taken branch instead of storing it. Differentiating a ``lax.cond`` directly
    makes the residuals of *both* branches outputs of the forward (the untaken branch's as zeros): under the
    scan over layers, every training step would zero-fill and stack the full branch's [B, H, T, T]
    probabilities even on band steps. Here the residuals are q, k, v, and the backward runs the taken
    branch's own forward + VJP (band: ~3 ms a layer at T = 500, batch 2)."""
    return jax.lax.cond(full, *_full_and_band(context), q, k, v)


def _full_and_band(context: int):
    """The two branches of :func:`band_or_full` (true: full attention, false: the band), each ``(q, k, v) -> o``."""
    return attention_xla, lambda q, k, v: attention_band(q, k, v, context)


def _band_or_full_fwd(q, k, v, full, context):
    return jax.lax.cond(full, *_full_and_band(context), q, k, v), (q, k, v, full)


def _band_or_full_bwd(context, res, g):
    q, k, v, full = res
    band = _full_and_band(context)[1]
    dq, dk, dv = jax.lax.cond(full, lambda: _dense_vjp(q, k, v, None, True, g),
                              lambda: jax.vjp(band, q, k, v)[1](g))
    return dq, dk, dv, None


band_or_full.defvjp(_band_or_full_fwd, _band_or_full_bwd)


# --------------------------------------------------------------------------- jax.nn.dot_product_attention
def _on_cuda() -> bool:
    dev = jax.devices()[0]
    return dev.platform == "gpu" and "cuda" in getattr(dev.client, "platform_version", "").lower()


def _cudnn_ok(q, k, has_mask: bool) -> bool:
    """Inputs cuDNN flash attention takes (else jax raises): half precision, head dim a multiple of 8 and
    <= 128, even lengths when a mask (bias) is trained through."""
    D, Tq, Tk = q.shape[-1], q.shape[1], k.shape[1]
    return (_on_cuda() and q.dtype in _HALF and D % 8 == 0 and D <= 128
            and (not has_mask or (Tq % 2 == 0 and Tk % 2 == 0)))


def _zero_empty_rows(o, mask):
    """Rows of ``o [B,Tq,H,D]`` whose mask allows no key -> 0 (the xla path's convention)."""
    any_key = jnp.any(mask, axis=-1)                                          # [.., .., Tq]
    any_key = jnp.broadcast_to(any_key, jnp.broadcast_shapes(any_key.shape, (1, 1, 1)))
    any_key = jnp.swapaxes(any_key, 1, 2)[..., None]                          # [B|1, Tq, H|1, 1]
    return jnp.where(any_key, o, jnp.zeros((), o.dtype))


def attention_dpa(q, k, v, mask=None):
    """``jax.nn.dot_product_attention`` (cuDNN where it applies, else its xla implementation)."""
    if mask is None:
        return jax.nn.dot_product_attention(q, k, v, implementation="cudnn" if _cudnn_ok(q, k, False) else "xla")
    if isinstance(mask, BandMask) and not mask.per_sample:
        cudnn = _cudnn_ok(q, k, True)

        def band():
            if cudnn:   # no symmetric window in cuDNN: the band as its (broadcast) bias
                return jax.nn.dot_product_attention(q, k, v, mask=mask.dense()[None, None], implementation="cudnn")
            return jax.nn.dot_product_attention(q, k, v, local_window_size=(mask.context, mask.context),
                                                implementation="xla")

        if mask.full is None:
            return band()
        return jax.lax.cond(mask.full, lambda: attention_dpa(q, k, v, None), band)
    mask = dense_mask(mask)
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    full = jnp.broadcast_to(mask, mask.shape[:2] + (q.shape[1], k.shape[1]))   # cuDNN: bias is [.., Tq, Tk]
    impl = "cudnn" if _cudnn_ok(q, k, True) else "xla"
    return _zero_empty_rows(jax.nn.dot_product_attention(q, k, v, mask=full, implementation=impl), mask)


# --------------------------------------------------------------------------- TPU splash attention
@functools.lru_cache(maxsize=64)
def splash_kernel(length: int, heads: int, context: int | None, block: int = SPLASH_BLOCK, interpret: bool = False):
    """A splash-attention MHA kernel over a padded length ``length`` (a multiple of ``block``): the band
    ``|i - j| <= context`` as a LocalMask, or full attention (``context=None``)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    with jax.ensure_compile_time_eval():     # concrete mask tables, also when first built inside a trace
        return sk.make_splash_mha(splash_mask(length, heads, context), block_sizes=_block_sizes(block),
                                  head_shards=1, q_seq_shards=1, interpret=interpret)


def splash_mask(length: int, heads: int, context: int | None):
    """The splash ``MultiHeadMask`` of the band (``LocalMask`` window (c, c)) or of full attention."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
    shape = (length, length)
    one = sm.FullMask(shape) if context is None else sm.LocalMask(shape, (context, context), 0)
    return sm.MultiHeadMask([one] * heads)


def _block_sizes(block: int):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    return sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                         block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)


def _splash_local(q, k, v, seg, full, *, context, interpret):
    """On one shard: q/k/v [B, H, Tp, D] (q pre-scaled), seg [B, Tp] or None, full None / bool [] / [B]."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    Tp, H = q.shape[2], q.shape[1]

    def run(ctx, q, k, v, seg):
        kern = splash_kernel(Tp, H, ctx, interpret=interpret)
        return kern(q, k, v, segment_ids=None if seg is None else sk.SegmentIds(seg, seg))

    def one(q, k, v, seg, full):             # one sample (the kernel is per sample)
        if full is None:
            return run(context, q, k, v, seg)
        return jax.lax.cond(full, lambda: run(None, q, k, v, seg), lambda: run(context, q, k, v, seg))

    per = full is not None and jnp.ndim(full) == 1
    return jax.vmap(one, in_axes=(0, 0, 0, None if seg is None else 0, 0 if per else None))(q, k, v, seg, full)


def attention_splash(q, k, v, mask=None, *, interpret: bool = False, block: int = SPLASH_BLOCK):
    """Splash attention for full attention (``mask`` None) or a :class:`BandMask`; q/k/v [B, T, H, D]."""
    B, T, H, D = q.shape
    Tp = -(-T // block) * block
    qh, kh, vh = (jnp.pad(jnp.swapaxes(x, 1, 2), ((0, 0), (0, 0), (0, Tp - T), (0, 0))) for x in (q, k, v))
    qh = qh * jnp.asarray(1.0 / math.sqrt(D), qh.dtype)           # the kernel does not scale
    seg = None if Tp == T else jnp.broadcast_to((jnp.arange(Tp) >= T).astype(jnp.int32), (B, Tp))
    context, full = (None, None) if mask is None else (mask.context, mask.full)
    fn = functools.partial(_splash_local, context=context, interpret=interpret)
    o = _maybe_shard_map(fn, per_sample=mask is not None and mask.per_sample)(qh, kh, vh, seg, full)
    return jnp.swapaxes(o[:, :, :T], 1, 2).astype(q.dtype)


def _maybe_shard_map(fn, *, per_sample: bool):
    """Under an active mesh with the project's axes (``jax.set_mesh``), run ``fn`` per shard: batch over
    (data, fsdp), heads over tensor (a Pallas kernel has no GSPMD partitioning rule)."""
    from jax.sharding import PartitionSpec as P

    mesh = jax.sharding.get_abstract_mesh()
    names = set(getattr(mesh, "axis_names", ()) or ())
    if not names or mesh.size <= 1 or not {"data", "fsdp", "tensor"} <= names:
        return fn
    qkv = P(("data", "fsdp"), "tensor", None, None)
    specs = (qkv, qkv, qkv, P(("data", "fsdp"), None), P(("data", "fsdp")) if per_sample else P())
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=qkv, check_vma=False)
