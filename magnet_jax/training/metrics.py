"""Metrics: ``WORKDIR/metrics.jsonl`` (one JSON object per logged step) and TensorBoard events,
plus the model-FLOPs estimate used for MFU."""
from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp

# Peak dense bf16 FLOP/s per chip.
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5": 459e12, "TPU v5p": 459e12,
              "TPU v6 lite": 918e12, "TPU v6e": 918e12}


def _forward_flops(mcfg, frames: int, text_len: int) -> dict[str, float]:
    """Forward matmul FLOPs of one sequence, by what the backward must do with them: ``token_weights`` (the layers'
    projections and FFN on the audio tokens, and the active output head), ``text_weights`` (cross-attention keys /
    values of the text and the text projection: their input is the frozen T5's output) and ``attention`` (self-
    attention scores / values over T, cross-attention over the text: no weights)."""
    D, L, T, S, F = mcfg.dim, mcfg.num_layers, frames, text_len, mcfg.ffn_dim
    return {"token_weights": T * (L * (2 * 4 * D * D + 2 * 2 * D * D + 2 * 2 * D * F) + 2 * D * mcfg.card),
            "text_weights": S * (L * 2 * 2 * D * D + 2 * mcfg.text_dim * D),
            "attention": T * L * (4 * T * D + 4 * S * D)}


def lora_adapter_flops(mcfg, frames: int, text_len: int, lora) -> float:
    """Forward FLOPs of ``lora``'s adapters on one sequence: ``2 (in r + r out)`` per token and layer for each
    target (``x a``, then ``(x a) b``), on the audio tokens, the text tokens for cross-attention keys / values."""
    from magnet_jax.model.lora import TARGETS
    D, F, r = mcfg.dim, mcfg.ffn_dim, int(lora.rank)
    total = 0.0
    for key in lora.targets:
        t = TARGETS[key]
        n_in, n_out = (D, F) if key == "ffn.w1" else (F, D) if key == "ffn.w2" else (D, D)
        tokens = text_len if t.module == "cross_attn" and t.name in ("k", "v") else frames
        total += 2.0 * (n_in + n_out) * r * tokens
    return mcfg.num_layers * total


def train_flops_per_step(mcfg, batch: int, frames: int, text_len: int, lora=None) -> float:
    """Model FLOPs of one training step (matmuls only), the numerator of MFU. ``lora``: the run's
    :class:`~magnet_jax.model.lora.LoRAConfig` (``config.lora.adapter()``), None for full training.

    Full training: 3x the forward (forward + input gradients + weight gradients: the usual ``6 N`` per token) of
    the layers' projections and FFN, self-attention scores / values over T, cross-attention over the text, the
    text projection and the one active output head.

    LoRA (the base frozen, only the adapters differentiated): the base's weight matmuls on the audio tokens count
    2x their forward (forward + the input gradient that reaches the adapters below them: ``4 N`` per token, no
    weight gradient of the base; that the first layer's q / k / v projection needs no input gradient either is
    ignored), the attention scores / values 3x (their gradient w.r.t. both operands is needed), the text-side
    projections 1x (nothing trainable lies below them: no gradient at all), and the adapters 3x their own forward
    (``6 n_lora`` per token)."""
    f = _forward_flops(mcfg, frames, text_len)
    if lora is None:
        return 3.0 * batch * sum(f.values())
    per_seq = (2.0 * f["token_weights"] + 3.0 * f["attention"] + f["text_weights"]
               + 3.0 * lora_adapter_flops(mcfg, frames, text_len, lora))
    return batch * per_seq


# GEMM shapes of the CPU peak measurement [M, K, N]: the LM's own (tokens x dim x ffn and back) and a square
MATMUL_PEAK_SHAPES = ((2048, 512, 2048), (2048, 2048, 512), (1024, 1024, 1024))


def measured_matmul_flops(shapes=MATMUL_PEAK_SHAPES, reps: int = 5) -> float:
    """This host's fp32 matmul throughput through XLA: the best single run over ``reps`` runs of each GEMM shape
    (a mean of a few runs of one square matmul under-reads a noisy 2-core host by 30-50 %, which put MFU
    above 100 %)."""
    best = 0.0
    for m, k, n in shapes:
        a, b = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
        f = jax.jit(jnp.matmul)
        f(a, b).block_until_ready()
        for _ in range(reps):
            t0 = time.perf_counter()
            f(a, b).block_until_ready()
            best = max(best, 2 * m * k * n / (time.perf_counter() - t0))
    return best


def peak_flops_per_device(override_tflops: float = 0.0) -> float:
    """Peak FLOP/s of one device: ``override_tflops`` if given, the bf16 peak of a known TPU, else (CPU or
    unknown) :func:`measured_matmul_flops` shared by the host's local devices."""
    if override_tflops > 0:
        return override_tflops * 1e12
    kind = jax.devices()[0].device_kind
    for name, flops in PEAK_FLOPS.items():
        if kind.startswith(name):
            return flops
    return measured_matmul_flops() / max(jax.local_device_count(), 1)


class MetricsWriter:
    """Writes on process 0 only."""

    def __init__(self, workdir: str | Path):
        self.enabled = jax.process_index() == 0
        self.path = Path(workdir) / "metrics.jsonl"
        self.tb = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                from tensorboardX import SummaryWriter
                self.tb = SummaryWriter(str(Path(workdir) / "tensorboard"))
            except ImportError:
                self.tb = None

    def write(self, step: int, metrics: dict):
        if not self.enabled:
            return
        row = {"step": int(step),
               **{k: (float(v) if not isinstance(v, (bool, str)) else v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float):
                    self.tb.add_scalar(k, v, int(step))
            self.tb.flush()

    def close(self):
        if self.tb is not None:
            self.tb.close()
