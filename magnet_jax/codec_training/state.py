"""Codec train state: generator params + codebook buffers, discriminator, both Adam states, the
generator EMA, the balancer's norm averages and counters, as one pytree (checkpointed by orbax).

Data parallel: every leaf is replicated over the mesh (the batch alone is sharded, along
``("data", "fsdp")`` by the logical ``batch`` rule of :mod:`magnet_jax.sharding`).
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


@flax.struct.dataclass
class CodecTrainState:
    step: jax.Array           # int32: updates done
    params: Any               # generator (EnCodec) nnx.Param pure dict
    codebook: Any             # CodebookState pure dict (EMA codebooks, never gradient-trained)
    opt_state: Any            # generator Adam
    disc_params: Any          # MS-STFT discriminator params ({} when GAN-free)
    disc_opt: Any             # discriminator Adam
    ema: Any                  # {"params", "codebook"}: audiocraft ModuleDictEMA of the generator (unbiased)
    ema_count: jax.Array      # float32: sum of decay^i (ModuleDictEMA.count)
    balancer: Any             # balancer EMA accumulators
    skipped: jax.Array        # int32: updates skipped by the non-finite guard

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> "CodecTrainState":
        return cls(**d)


def fresh(params, codebook, disc_params, tx_g, tx_d, balancer_state) -> CodecTrainState:
    zero = jnp.zeros((), jnp.int32)
    return CodecTrainState(step=zero, params=params, codebook=codebook, opt_state=tx_g.init(params),
                           disc_params=disc_params, disc_opt=tx_d.init(disc_params),
                           ema={"params": jax.tree.map(jnp.copy, params), "codebook": jax.tree.map(jnp.copy, codebook)},
                           ema_count=jnp.zeros((), jnp.float32), balancer=balancer_state, skipped=zero)


def ema_update(ema, count, new, decay: float):
    """``ModuleDictEMA.step`` with ``unbias=True``: ``count = decay * count + 1``, ``w = 1 / count``,
    ``ema = (1 - w) * ema + w * new`` on every floating leaf."""
    count = count * decay + 1.0
    w = 1.0 / count

    def upd(e, p):
        if not jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating):
            return p
        return e * (1.0 - w) + p * w
    return jax.tree.map(upd, ema, new), count


def replicated(tree, mesh):
    rep = NamedSharding(mesh, P())
    return jax.tree.map(lambda _: rep, tree)


def make_optimizer(cfg) -> optax.GradientTransformation:
    """audiocraft ``optim``: Adam (lr 3e-4, betas (0.5, 0.9), eps 1e-8, no weight decay), optional
    gradient clipping (``max_norm``, 0 = off). The same settings serve the discriminator."""
    o = cfg.optim
    adam = (optax.adamw(float(o.lr), b1=float(o.b1), b2=float(o.b2), eps=float(o.eps),
                        weight_decay=float(o.weight_decay))
            if float(o.weight_decay) > 0 else optax.adam(float(o.lr), b1=float(o.b1), b2=float(o.b2), eps=float(o.eps)))
    if float(o.max_norm) > 0:
        return optax.chain(optax.clip_by_global_norm(float(o.max_norm)), adam)
    return adam
