"""MAGNeT iterative span decoding as one jitted program (audiocraft ``MagnetLMModel.generate``).

Algorithm (Ziv et al. 2024, audiocraft ``lm_magnet.py`` ``_generate_magnet`` / ``_generate_stage``),
for each codebook ``stage`` in order (coarse → fine), ``n = decoding_steps[stage]`` steps:

1. ``mask_p = cos(pi/2 * linspace(0, 1, n)[i])`` (float32), ``num_masked = max(int(mask_p * n_gen), 1)``
   units, where a unit is a span of ``span_len`` tokens (``nonoverlap``) or a token (``stride1``)
   and ``n_gen`` is the number of units still to generate (not prompt / kept).
2. Re-mask the ``num_masked`` highest-scored units (``nonoverlap``: top-k chunks; ``stride1``:
   the binary search over overlapping spans of ``_least_probable_span_masking``). Kept tokens
   (prompt prefix, infill context) are re-imposed.
3. One forward on the ``2B`` batch ``[cond; null]``; CFG ``uncond + (cond - uncond) * coef`` with
   ``coef = mask_p * max_cfg + (1 - mask_p) * min_cfg``.
4. ``probs = softmax(logits / max(temp * (n-1-i)/n, 0.01))``; sample (top-p, else top-k — which
   renormalises the probs used as confidences, else plain) or ``argmax(logits)`` when
   ``use_sampling=False``. Only masked positions take the new token.
5. Scores (higher = re-masked next): ``nonoverlap``: ``1 - max p`` (``'max'``) or ``sum -log p``
   (``'prod'``) per chunk; ``stride1``: ``-log p`` per token. Units not masked in this step get
   ``-1e4``, so later steps only re-mask units just resampled.

Implementation: one ``jax.jit`` per (graphdef, :class:`GenerationConfig`, shapes). A static Python loop
runs the K stages, each a ``lax.fori_loop`` over its steps (compile time does not grow with the step
counts). The per-step schedule (``mask_p``, CFG coefficient, temperature) is computed on the host in
float32 exactly like torch (:func:`stage_schedule`) and baked in as constants; per-item unit counts
(``num_masked``) are computed on device. The model goes through ``nnx.split``: its parameters are a
jit argument, so new weights do not recompile; neither do new prompts / regions / prompt lengths
(they are padded to ``[B, K, T]`` + a keep mask before the jitted core).

Beyond the reference:

* **Continuation** from a prompt of any length ``P < T``, per item via ``prompt_lens``.
* **Infill**: ``infill_mask`` [B, T] (True = regenerate) with ``init_codes`` [B, K, T]; every
  position outside the region keeps its ``init_codes`` tokens on *all* codebooks, bit-identical.
  A span (``nonoverlap``) is generated iff any of its tokens is in the region (for a prompt this is
  exactly the reference's ``n_chunks - P // span_len``); kept tokens inside it are re-imposed.
* **Unconditional**: ``text_hidden=None`` runs the B null rows only (the reference crashes).
  Per item, an all-zero ``text_mask`` row is the null condition as well (CFG then is a no-op).

Ties: unit rankings use a stable descending sort (lower index first). torch's ``topk`` / ``argsort``
break exact ties in an unspecified order; with real-valued scores ties only occur among units that
cannot be selected (the ``-1e4`` locked ones) or in the first step, where every unit is masked anyway.

The null condition: audiocraft tokenizes ``""`` for the null rows, whose T5 conditioner output is
``proj(hidden) * mask`` with an all-zero mask, i.e. exactly zero. :func:`generate` builds the null
rows as (zero hidden, zero mask) of the same text length ``S``; the condition tensors are then
identical to the reference's.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["GenerationConfig", "generate", "generate_with_trace", "stage_schedule", "torch_linspace_f32",
           "sample_tokens", "DONT_REMASK_SCORE"]

DONT_REMASK_SCORE = -1e4          # reference DONT_REMASK_ME_SCORE
_ARRANGEMENTS = ("nonoverlap", "stride1")
_SCORINGS = ("max", "prod")


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Decoding parameters, audiocraft names; defaults = ``MAGNeT.set_generation_params`` (music, 10 s).

    Frozen and hashable (``decoding_steps`` is a tuple): a static argument of the jitted program.
    ``decoding_steps`` holds one step count per codebook (its length must be the model's ``n_q``).
    """
    use_sampling: bool = True
    temp: float = 3.0
    top_k: int = 0
    top_p: float = 0.9
    max_cfg_coef: float = 10.0
    min_cfg_coef: float = 1.0
    decoding_steps: tuple[int, ...] = (20, 10, 10, 10)
    span_arrangement: str = "nonoverlap"
    span_scoring: str = "max"
    anneal_temp: bool = True

    def __post_init__(self):
        object.__setattr__(self, "decoding_steps", tuple(int(s) for s in self.decoding_steps))
        if any(s < 1 for s in self.decoding_steps):
            raise ValueError(f"decoding_steps must be >= 1, got {self.decoding_steps}")
        if self.span_arrangement not in _ARRANGEMENTS:
            raise ValueError(f"span_arrangement must be one of {_ARRANGEMENTS}, got {self.span_arrangement!r}")
        if self.span_scoring not in _SCORINGS:
            raise ValueError(f"span_scoring must be one of {_SCORINGS}, got {self.span_scoring!r}")
        if self.top_k < 0 or self.top_p < 0:
            raise ValueError("top_k and top_p must be >= 0")

    @classmethod
    def music(cls, duration: float = 10.0, **kw) -> "GenerationConfig":
        """MAGNeT music models: temp 3.0, top-p 0.9, CFG 10 → 1, steps ``[20·duration/10, 10, 10, 10]``
        (``[20, 10, 10, 10]`` for 10 s, ``[60, 10, 10, 10]`` for 30 s, as the audiocraft demo)."""
        first = max(int(20 * duration // 10), 1)
        return cls(**{"decoding_steps": (first, 10, 10, 10), **kw})

    @classmethod
    def audio(cls, duration: float = 10.0, **kw) -> "GenerationConfig":
        """Audio-MAGNeT (sound effects): temp 3.5, top-p 0.8, CFG 20 → 1, steps ``[20, 10, 10, 10]``."""
        first = max(int(20 * duration // 10), 1)
        return cls(**{"temp": 3.5, "top_p": 0.8, "max_cfg_coef": 20.0, "min_cfg_coef": 1.0,
                      "decoding_steps": (first, 10, 10, 10), **kw})

    def replace(self, **kw) -> "GenerationConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decoding_steps"] = list(self.decoding_steps)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GenerationConfig":
        from magnet_jax.model.config import strict_from_dict
        return strict_from_dict(cls, d)


# ----------------------------------------------------------------------------- schedule (host, float32)
def torch_linspace_f32(n: int) -> np.ndarray:
    """``torch.linspace(0, 1, n)`` (float32, CPU) bit for bit.

    ATen computes ``step = 1/(n-1)`` in float32, then ``step * i`` for the first half and
    ``1 - step * (n-1-i)`` for the second half; its compiled kernel fuses the latter into one
    multiply-add (a single rounding). Both are reproduced exactly in float64 (the products of a
    float32 by a small integer are exact there) followed by one rounding to float32. Verified against
    torch for every n < 2000 (tests/test_decoding.py checks n < 130).
    """
    if n == 1:
        return np.zeros((1,), np.float32)
    step = np.float64(np.float32(1.0) / np.float32(n - 1))
    i = np.arange(n)
    lo = (step * i).astype(np.float32)
    hi = (1.0 - step * (n - 1 - i)).astype(np.float32)
    return np.where(i < n // 2, lo, hi).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _cos_corrections() -> dict[int, dict[int, int]]:
    import base64
    import zlib
    from magnet_jax.decoding._torch_cos_table import BLOB
    raw = zlib.decompress(base64.b64decode("".join(BLOB)))
    table: dict[int, dict[int, int]] = {}
    for j in range(0, len(raw), 3):
        table.setdefault(raw[j] + 1, {})[raw[j + 1]] = 1 if raw[j + 2:j + 3] == b"+" else -1
    return table


def _mask_rates(n: int) -> np.ndarray:
    """float32 ``torch.cos(timestep * pi * 0.5)`` over ``torch.linspace(0, 1, n)``, bit for bit.

    The argument is the float32 product (torch casts ``math.pi`` to float32). torch's float32 cosine
    (SLEEF, < 1 ulp) is not correctly rounded: a generated table (``_torch_cos_table.py``, n <= 256)
    holds its one-ulp deviations from the correctly rounded value; beyond n = 256 the correctly
    rounded cosine is used (at most 1 ulp from torch).
    """
    ts = torch_linspace_f32(n)
    arg = (ts * np.float32(math.pi)).astype(np.float32) * np.float32(0.5)
    out = np.cos(arg.astype(np.float64)).astype(np.float32)
    fix = _cos_corrections().get(n)
    if fix:
        bits = out.view(np.int32).copy()
        for i, d in fix.items():
            bits[i] += d
        out = bits.view(np.float32)
    return out


def stage_schedule(n_steps: int, config: GenerationConfig, n_units: int | None = None) -> dict[str, np.ndarray]:
    """One stage's per-step schedule, exactly as ``_generate_stage``.

    Returns float32 ``mask_p`` [n], ``cfg_coef`` [n] (Python-float formula, then float32 as torch applies
    it to a float32 tensor), ``temperature`` [n] (the divisor, floored at 0.01) and, if ``n_units`` is
    given, int ``num_masked`` [n] = ``max(int(mask_p * n_units), 1)`` in float32.
    """
    mask_p = _mask_rates(n_steps)
    coef, temps = [], []
    for i in range(n_steps):
        m = float(mask_p[i])
        coef.append(m * config.max_cfg_coef + (1 - m) * config.min_cfg_coef)
        steps_left = n_steps - 1 - i
        t = config.temp * (steps_left / n_steps) if config.anneal_temp else config.temp
        temps.append(max(t, 1e-2))
    out = {"mask_p": mask_p, "cfg_coef": np.asarray(coef, np.float32), "temperature": np.asarray(temps, np.float32)}
    if n_units is not None:
        prod = (mask_p * np.float32(n_units)).astype(np.float32)
        out["num_masked"] = np.maximum(np.floor(prod).astype(np.int64), 1)
    return out


# ----------------------------------------------------------------------------- sampling
def sample_tokens(key, logits, probs, config: GenerationConfig):
    """Tokens [...] and the probabilities used as confidences [..., card] for one step.

    ``logits`` are the CFG logits, ``probs = softmax(logits / temperature)``.

    * ``use_sampling=False``: ``argmax(logits)``; confidences = ``probs``.
    * ``top_p > 0``: the reference nucleus (descending sort, drop where ``cumsum - p > top_p``), i.e.
      token ``i`` is kept iff the mass of strictly more probable tokens is ``<= top_p``; sampled;
      confidences = the untruncated ``probs`` (the reference sorts a copy).
    * else ``top_k > 0``: ``probs * (probs >= k-th largest)``, renormalised, sampled; confidences =
      these renormalised probs (the reference modifies ``probs`` in place).
    * else: sampled from ``probs``.

    No sort (slow on XLA:CPU): the nucleus / k-th largest thresholds are found by a bisection over the
    float32 bit patterns (monotone for non-negative floats, 32 masked reductions); sampling is a
    two-level inverse CDF with one uniform per position (the distribution of ``torch.multinomial``).
    """
    if not config.use_sampling:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), probs
    if config.top_p > 0.0:
        weights = jnp.where(probs >= _nucleus_threshold(probs, config.top_p), probs, 0.0)
        conf = probs
    elif config.top_k > 0:
        kth = _kth_largest(probs, min(config.top_k, probs.shape[-1]))
        weights = probs * (probs >= kth).astype(probs.dtype)
        weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
        conf = weights
    else:
        weights = conf = probs
    return _inverse_cdf(key, weights), conf


def _bits(p):
    return jax.lax.bitcast_convert_type(p, jnp.int32)


def _nucleus_threshold(probs, top_p: float):
    """Smallest float ``x`` (as a float32 [..., 1]) with ``sum(probs[probs > x]) <= top_p``."""
    bits = _bits(probs)
    lo = jnp.zeros(probs.shape[:-1] + (1,), jnp.int32)
    hi = jnp.max(bits, axis=-1, keepdims=True)                       # mass above the max is 0

    def body(_, c):
        lo, hi = c
        mid = lo + (hi - lo) // 2
        ok = jnp.sum(jnp.where(bits > mid, probs, 0.0), axis=-1, keepdims=True) <= top_p
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    _, hi = jax.lax.fori_loop(0, 32, body, (lo, hi))
    return jax.lax.bitcast_convert_type(hi, jnp.float32)


def _kth_largest(probs, k: int):
    """The k-th largest value of the last axis (ties counted), float32 [..., 1]."""
    bits = _bits(probs)
    lo = jnp.zeros(probs.shape[:-1] + (1,), jnp.int32)             # count(bits >= 0) = V >= k
    hi = jnp.max(bits, axis=-1, keepdims=True) + 1                  # count = 0 < k

    def body(_, c):
        lo, hi = c
        mid = lo + (hi - lo) // 2
        ok = jnp.sum((bits >= mid).astype(jnp.int32), axis=-1, keepdims=True) >= k
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, 32, body, (lo, hi))
    return jax.lax.bitcast_convert_type(lo, jnp.float32)


def _inverse_cdf(key, weights, block: int = 64):
    """One categorical draw per row of non-negative ``weights`` [..., V] (need not be normalised).

    Two levels (block sums, then within the chosen block) keep the work O(V). A zero-weight token is
    never returned: the draw ``r`` is kept strictly below each level's total.
    """
    V = weights.shape[-1]
    pad = (-V) % block
    w = jnp.pad(weights, [(0, 0)] * (weights.ndim - 1) + [(0, pad)]) if pad else weights
    nb = w.shape[-1] // block
    wb = w.reshape(w.shape[:-1] + (nb, block))
    bcdf = jnp.cumsum(jnp.sum(wb, axis=-1), axis=-1)                 # [..., nb]
    total = bcdf[..., -1:]
    u = jax.random.uniform(key, total.shape, jnp.float32)
    r = jnp.minimum(u * total, jnp.nextafter(total, jnp.zeros_like(total)))
    blk = jnp.minimum(jnp.sum((bcdf <= r).astype(jnp.int32), axis=-1), nb - 1)          # [...]
    before = jnp.where(blk > 0, jnp.take_along_axis(bcdf, jnp.maximum(blk - 1, 0)[..., None], -1)[..., 0], 0.0)
    inner = jnp.cumsum(jnp.take_along_axis(wb, blk[..., None, None], axis=-2)[..., 0, :], axis=-1)  # [..., block]
    r2 = jnp.minimum(r[..., 0] - before, jnp.nextafter(inner[..., -1], 0.0))
    pos = jnp.minimum(jnp.sum((inner <= r2[..., None]).astype(jnp.int32), axis=-1), block - 1)
    return (blk * block + pos).astype(jnp.int32)


# ----------------------------------------------------------------------------- span selection
def _descending_ranks(scores):
    """Rank of each entry in a stable descending sort along the last axis (0 = highest)."""
    order = jnp.argsort(scores, axis=-1, descending=True, stable=True)
    n = scores.shape[-1]
    ranks = jnp.zeros(scores.shape, jnp.int32)
    return jnp.put_along_axis(ranks, order, jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), scores.shape),
                              axis=-1, inplace=False)


def _round_half_even_of_half(s):
    """Python ``round(0.5 * s)`` for a non-negative int ``s`` (ties to even)."""
    q = s // 2
    return jnp.where((s % 2 == 1) & (q % 2 == 1), q + 1, q)


def _lps_mask(scores, num_masked, span_len: int):
    """``_least_probable_span_masking`` for one item: scores [T] (-log p), returns bool [T].

    Span scores are sums over the ``T - L + 1`` overlapping windows; the union of the top-``u`` spans is
    found by the reference's binary search on ``u`` (Python round-half-even midpoints) and the mask
    *last evaluated* is returned.
    """
    T = scores.shape[-1]
    n_spans = T - span_len + 1
    span_scores = scores[:n_spans]
    for j in range(1, span_len):
        span_scores = span_scores + scores[j:j + n_spans]
    ranks = _descending_ranks(span_scores)

    def spans_mask(u):
        starts = ranks < u                                   # [n_spans]
        m = jnp.zeros((T,), jnp.bool_)
        for j in range(span_len):
            m = m.at[j:j + n_spans].max(starts)
        return m

    target = jnp.maximum(num_masked, span_len)
    lo = target // span_len
    hi = target - span_len + 1
    mid = _round_half_even_of_half(lo + hi)

    def cond(c):
        lo, hi, mid, _ = c
        return (mid > lo) & (mid < hi)

    def body(c):
        lo, hi, mid, _ = c
        m = spans_mask(mid)
        over = jnp.sum(m.astype(jnp.int32)) > target
        lo, hi = jnp.where(over, lo, mid), jnp.where(over, mid, hi)
        return lo, hi, _round_half_even_of_half(lo + hi), m

    return jax.lax.while_loop(cond, body, (lo, hi, mid, spans_mask(mid)))[3]


# ----------------------------------------------------------------------------- the jitted program
@functools.partial(jax.jit, static_argnames=("graphdef", "config", "trace"))
def _decode(graphdef, config: GenerationConfig, state, text_hidden, text_mask, known, keep, rng, trace=False):
    """Core program. known int32 [B, K, T] (values at kept positions), keep bool [B, T]; T already trimmed."""
    lm = nnx.merge(graphdef, state)
    c = lm.config
    B, K, T = known.shape
    L = c.span_len
    mask_id = c.mask_id
    chunked = L > 1 and config.span_arrangement == "nonoverlap"
    lps = L > 1 and config.span_arrangement == "stride1"

    codes = jnp.where(keep[:, None, :], known, mask_id).astype(jnp.int32)
    cfg = text_hidden is not None
    if cfg:
        cond = lm.project_text(text_hidden, text_mask)
        cond2 = jnp.concatenate([cond, jnp.zeros_like(cond)], 0)
        tmask2 = jnp.concatenate([text_mask, jnp.zeros_like(text_mask)], 0)
    else:
        cond2 = jnp.zeros((B, 1, c.dim), lm.compute_dtype)
        tmask2 = None

    if chunked:
        unit_keep = keep.reshape(B, T // L, L).all(-1)
    else:
        unit_keep = keep
    n_gen = jnp.sum(~unit_keep, axis=-1).astype(jnp.float32)            # [B] units to generate
    init_scores = jnp.where(unit_keep, jnp.float32(DONT_REMASK_SCORE), jnp.float32(0.0))

    total = sum(config.decoding_steps)
    tr = None
    if trace:
        tr = {"num_masked": jnp.zeros((total, B), jnp.int32), "seq_in": jnp.zeros((total, B, T), jnp.int32),
              "seq_out": jnp.zeros((total, B, T), jnp.int32), "cfg_coef": jnp.zeros((total,), jnp.float32),
              "temperature": jnp.zeros((total,), jnp.float32)}

    offset = 0
    for stage, n_steps in enumerate(config.decoding_steps):
        sch = stage_schedule(n_steps, config)
        mask_p, coefs, temps = (jnp.asarray(sch[k]) for k in ("mask_p", "cfg_coef", "temperature"))
        known_s = known[:, stage]

        def body(i, carry, stage=stage, offset=offset, mask_p=mask_p, coefs=coefs, temps=temps, known_s=known_s):
            codes, scores, tr, st = carry
            lm = nnx.merge(graphdef, st)        # state rides in the carry: nnx wants body-level tracers
            nm = jnp.maximum(jnp.floor(mask_p[i] * n_gen).astype(jnp.int32), 1)     # [B]
            seq = codes[:, stage]
            if chunked:
                unit_sel = _descending_ranks(scores) < nm[:, None]                 # [B, U]
                tok_sel = jnp.repeat(unit_sel, L, axis=-1)
            elif lps:
                tok_sel = jax.vmap(functools.partial(_lps_mask, span_len=L))(scores, nm)
            else:                                                                    # span_len 1
                tok_sel = _descending_ranks(scores) < nm[:, None]
            seq = jnp.where(tok_sel, mask_id, seq)
            seq = jnp.where(keep, known_s, seq)
            codes = codes.at[:, stage].set(seq)

            if cfg:
                both = lm.stage_logits(jnp.concatenate([codes, codes], 0), None, tmask2, stage, cond=cond2)
                cond_l, uncond_l = both[:B], both[B:]
                logits = uncond_l + (cond_l - uncond_l) * coefs[i]
            else:
                logits = lm.stage_logits(codes, None, None, stage, cond=cond2)
            probs = jax.nn.softmax(logits / temps[i], axis=-1)
            key = jax.random.fold_in(rng, offset + i)
            sampled, conf = sample_tokens(key, logits, probs, config)

            masked = seq == mask_id
            new_seq = jnp.where(masked, sampled, seq)
            codes = codes.at[:, stage].set(new_seq)
            p_tok = jnp.take_along_axis(conf, sampled[..., None], axis=-1)[..., 0]     # [B, T]
            if chunked:
                pc = p_tok.reshape(B, T // L, L)
                if config.span_scoring == "max":
                    new_scores = 1 - jnp.max(pc, axis=-1)
                else:
                    new_scores = jnp.sum(-jnp.log(pc), axis=-1)
                new_scores = jnp.where(unit_sel, new_scores, DONT_REMASK_SCORE)
            else:
                new_scores = jnp.where(masked, -jnp.log(p_tok), DONT_REMASK_SCORE)
            if tr is not None:
                g = offset + i
                tr = {"num_masked": tr["num_masked"].at[g].set(nm), "seq_in": tr["seq_in"].at[g].set(seq),
                      "seq_out": tr["seq_out"].at[g].set(new_seq), "cfg_coef": tr["cfg_coef"].at[g].set(coefs[i]),
                      "temperature": tr["temperature"].at[g].set(temps[i])}
            return codes, new_scores.astype(jnp.float32), tr, st

        codes, _, tr, _ = jax.lax.fori_loop(0, n_steps, body, (codes, init_scores, tr, state))
        offset += n_steps
    return codes, tr


# ----------------------------------------------------------------------------- public API
def _prepare(lm, text_hidden, text_mask, prompt, prompt_lens, infill_mask, init_codes, num_frames, num_samples,
             config):
    c = lm.config
    K = c.n_q
    if len(config.decoding_steps) != K:
        raise ValueError(f"decoding_steps has {len(config.decoding_steps)} entries, the model has n_q={K}")
    if num_frames is None:
        num_frames = init_codes.shape[-1] if init_codes is not None else c.segment_frames
    T = int(num_frames)
    batch = [x.shape[0] for x in (text_hidden, prompt, init_codes, infill_mask) if x is not None]
    B = batch[0] if batch else (num_samples or 1)
    if any(b != B for b in batch) or (num_samples is not None and num_samples != B):
        raise ValueError(f"inconsistent batch sizes: {batch} (num_samples={num_samples})")

    if text_hidden is not None:
        text_hidden = jnp.asarray(text_hidden, jnp.float32)
        if text_mask is None:
            text_mask = jnp.ones(text_hidden.shape[:2], jnp.int32)
        text_mask = jnp.asarray(text_mask, jnp.int32)
        if text_hidden.ndim != 3 or text_hidden.shape[-1] != c.text_dim or text_mask.shape != text_hidden.shape[:2]:
            raise ValueError(f"text_hidden must be [B, S, {c.text_dim}] with text_mask [B, S]; got "
                             f"{text_hidden.shape} / {text_mask.shape}")
    else:
        text_mask = None

    t = jnp.arange(T)
    known = jnp.zeros((B, K, T), jnp.int32)
    keep = jnp.zeros((B, T), jnp.bool_)
    if init_codes is not None:
        init_codes = jnp.asarray(init_codes, jnp.int32)
        if init_codes.shape != (B, K, T):
            raise ValueError(f"init_codes must be [B, K, T] = {(B, K, T)}, got {init_codes.shape}")
        if infill_mask is None:
            raise ValueError("init_codes needs infill_mask (True = regenerate)")
        known = init_codes
    if infill_mask is not None:
        if init_codes is None:
            raise ValueError("infill_mask needs init_codes [B, K, T] (the tokens kept outside the region)")
        infill_mask = jnp.asarray(infill_mask, jnp.bool_)
        if infill_mask.shape != (B, T):
            raise ValueError(f"infill_mask must be [B, T] = {(B, T)}, got {infill_mask.shape}")
        keep = ~infill_mask
    if prompt is not None:
        prompt = jnp.asarray(prompt, jnp.int32)
        P = prompt.shape[-1]
        if prompt.ndim != 3 or prompt.shape[:2] != (B, K) or P >= T:
            raise ValueError(f"prompt must be [B={B}, K={K}, P < T={T}], got {prompt.shape}")
        lens = jnp.full((B,), P, jnp.int32) if prompt_lens is None else jnp.asarray(prompt_lens, jnp.int32)
        in_prompt = t[None, :] < lens[:, None]                                   # [B, T]
        padded = jnp.pad(prompt, ((0, 0), (0, 0), (0, T - P)))
        known = jnp.where(in_prompt[:, None, :], padded, known)
        keep = keep | in_prompt
    elif prompt_lens is not None:
        raise ValueError("prompt_lens given without prompt")

    if c.span_len > 1 and config.span_arrangement == "nonoverlap":
        T = c.span_len * (T // c.span_len)                                       # reference trims
        known, keep = known[..., :T], keep[..., :T]
    return text_hidden, text_mask, known, keep


def generate_with_trace(lm, text_hidden=None, text_mask=None, *, config: GenerationConfig = GenerationConfig(),
                        rng=None, prompt=None, prompt_lens=None, infill_mask=None, init_codes=None,
                        num_frames=None, num_samples=None, trace=True):
    """:func:`generate` that also returns a per-step trace (dict of arrays over all ``sum(steps)`` steps):
    ``num_masked`` [N, B] units masked, ``seq_in`` [N, B, T] stage row fed to the model (mask id =
    card), ``seq_out`` [N, B, T] after sampling, ``cfg_coef`` [N], ``temperature`` [N]."""
    text_hidden, text_mask, known, keep = _prepare(lm, text_hidden, text_mask, prompt, prompt_lens, infill_mask,
                                                   init_codes, num_frames, num_samples, config)
    rng = jax.random.key(0) if rng is None else rng
    if isinstance(rng, int):
        rng = jax.random.key(rng)
    graphdef, state = nnx.split(lm)
    return _decode(graphdef, config, state, text_hidden, text_mask, known, keep, rng, trace=trace)


def generate(lm, text_hidden=None, text_mask=None, *, config: GenerationConfig = GenerationConfig(), rng=None,
             prompt=None, infill_mask=None, num_frames=None, prompt_lens=None, init_codes=None,
             num_samples=None):
    """MAGNeT generation → int32 codes [B, K, T'] (``T' = span_len * (T // span_len)`` for ``nonoverlap``,
    ``T`` for ``stride1``, as the reference returns them).

    Args:
      lm: :class:`~magnet_jax.model.MagnetLM`.
      text_hidden: float [B, S, E] T5 encoder output, or None for unconditional generation (B from the
        other inputs or ``num_samples``). The null CFG rows are built here (zero hidden, zero mask).
      text_mask: [B, S] (1 = token). An all-zero row is the null condition for that item.
      config: :class:`GenerationConfig` (static: a new config compiles a new program).
      rng: ``jax.random.key`` (or an int seed); step ``g`` (global over stages) uses ``fold_in(rng, g)``.
      prompt: int [B, K, P] with ``P < T``: continuation. The first ``prompt_lens[b]`` frames of item
        ``b`` (default all ``P``) are kept on every codebook and never re-masked.
      infill_mask: bool [B, T], True = regenerate; needs ``init_codes`` int [B, K, T] giving the tokens
        kept (bit-identical, all codebooks) everywhere else. May be combined with ``prompt``.
      num_frames: T, default ``lm.config.segment_frames`` (or ``init_codes.shape[-1]``).
    """
    codes, _ = generate_with_trace(lm, text_hidden, text_mask, config=config, rng=rng, prompt=prompt,
                                   prompt_lens=prompt_lens, infill_mask=infill_mask, init_codes=init_codes,
                                   num_frames=num_frames, num_samples=num_samples, trace=False)
    return codes
