"""Ahead-of-time compilation of the real sharded programs for a TPU slice, on a host without a TPU.

  python -m benchmarks.tpu_compile --config=magnet_small_10secs --topology=v4:2x2x1 --batch_size=192 \
      [--attention_impl=splash] [--mesh=data=1,fsdp=-1] [--remat=true] [--json=OUT]
  python -m benchmarks.tpu_compile --config=encodec_musicgen_32khz --topology=v4:2x2x2     # the codec trainer
  python -m benchmarks.tpu_compile --config=tiny --topology=v4:2x2x2 --num_slices=2 --batch_size=32   # multislice
  python -m benchmarks.tpu_compile --config=magnet_small_10secs --topology=h100x8    # needs jax-cuda12-plugin

``jax.experimental.topologies.get_topology_desc`` (with ``jax[tpu]``'s libtpu installed at the project's JAX
version) gives the devices of a TPU slice on a CPU-only host, and ``jax.jit(...).lower(...).compile()`` compiles for
them with the real TPU compiler (how MaxText's ``train_compile.py`` checks memory ahead of time). Nothing is
materialised: the parameters, optimizer state and batch are ``jax.ShapeDtypeStruct`` with their ``NamedSharding``
on the slice's mesh (``nnx.eval_shape`` for the model).

Programs (``--programs``):

* ``train``: the trainer's step exactly as ``magnet_jax.training.loop.train`` builds it
  (``training.step.make_train_step``: frozen T5 inside the step on ``text_ids``, span masking, loss, backward,
  clipping, AdamW, the non-finite guard, EMA; fp32 master weights, ``--dtype`` compute, remat as configured or
  ``--remat``), the mesh the trainer builds from the config's ``mesh`` section (or ``--mesh``), the batch sharded
  by ``sharding.BATCH_AXES``, the state donated. MusicGen configs (``musicgen_small`` ...) run their objective.
  The codec configs (``encodec_musicgen_32khz`` ...) compile ``codec_training.step.make_train_step``.
* ``generate``: MAGNeT's decoding program (``decoding.magnet._decode``: CFG as a 2B batch, the per-stage
  ``fori_loop`` over decoding steps, the config's generation settings) or MusicGen's (``musicgen.generate``: the
  KV-cached loop over the delayed sequence), parameters sharded by the logical-axis rules, the batch over
  ``(data, fsdp)``, the text at ``config.text.max_length`` tokens.

Per program the JSON has ``per_device_bytes`` (``memory_analysis()``: arguments + outputs + temporaries - aliased),
``hbm_bytes`` of the chip, ``fits``, the compile time, the mesh, the attention implementation, and
``largest_batch``: the largest global batch (a multiple of the data-parallel ways) whose program the compiler
accepts within the chip's HBM, found by compiling (the requested batch, then doubling or halving to a bracket, then
interpolation / bisection inside it; capped by ``--search_budget_s``, ``largest_batch.complete`` says whether it
finished). ``flops_per_step``: XLA's ``cost_analysis()`` counts the body of a loop once, whatever its trip count
(the scanned layers, the decoding loops), so the FLOPs come from two extra compiles of the same program with one and
two unrolled layers (``scan_layers=False``), extrapolated linearly to the model's depth (its layers are identical);
for ``generate`` those builds have one decoding step per stage (loops of one trip are removed by XLA), scaled by the
mean number of steps per stage. ``compiler_flops_raw`` is the uncorrected count of the real program. All FLOPs are
for the whole slice (``cost_analysis`` is per device; multiplied by the device count).

Multislice (``--num_slices``): the slices' devices from the same call; the trainer's mesh puts its data axis across
the slices (``sharding.make_mesh``). H100 (``--topology=h100`` or ``h100x8``): the CUDA PJRT plugin's compile-only
client from a ``GpuTargetConfig`` (no GPU, no driver; ``jax-cuda12-plugin`` / ``jax-cuda12-pjrt`` at the JAX
version), Triton GEMM fusions off (they do not tile without autotuning), no cost analysis (no FLOPs), and
``dot_product_attention`` as its XLA implementation (cuDNN needs the library and a device).

Results are merged into ``--json`` (default ``benchmarks/results/tpu_compile.json``), one entry per (config,
topology, program, options), with this machine and the date. What cannot be built or compiled (an unknown topology,
a lowering error) is recorded as a row with ``error`` and ``failed_at``, and the next program goes on.
"""
from __future__ import annotations

import os

# No TPU runtime on this host: JAX's backend is the CPU, the TPU plugin is loaded for its compiler only; several
# processes (pytest workers, other jobs) may load libtpu at once (its lock file is for a real TPU's exclusive use).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import dataclasses  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from absl import app, flags  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GiB = 1 << 30
# HBM per device (a v4 / v5p device is one megacore chip)
HBM_BYTES = {"TPU v4": 32 * GiB, "TPU v5 lite": 16 * GiB, "TPU v5": 95 * GiB, "TPU v6 lite": 32 * GiB}
CHIP_CONFIG = {"v4": "megacore", "v5p": "megacore", "v5": "megacore"}     # others (v5e, v6e): "default"
# The frozen T5 encoders of the released recipes (Hugging Face config.json of google-t5/t5-base / t5-large).
T5_ARCH = {"t5-base": dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
           "t5-large": dict(vocab_size=32128, d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_heads=16)}
CODEC_CONFIGS = ("encodec_musicgen_32khz", "encodec_audiogen_16khz", "tiny_codec")


# ----------------------------------------------------------------------------------------------- the slice
@dataclasses.dataclass
class Target:
    topology: str
    num_slices: int
    devices: list
    device_kind: str
    hbm_bytes: int
    backend: str = "tpu"          # what the programs are traced for (attention.target_backend)


# A GPU target for deviceless compilation (``jax-cuda12-plugin`` / ``jax-cuda12-pjrt`` at the JAX version, no GPU):
# the plugin's compile-only topology from a ``GpuTargetConfig`` text proto (XLA's xla/tools/hlo_opt/gpu_specs).
GPU_TARGET_CONFIGS = {"h100": """gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152 shared_memory_per_core: 233472
  threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128 block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535 block_dim_limit_z: 65535 memory_bandwidth: 3352320000000 l2_cache_size: 52428800
  clock_rate_ghz: 1.98 device_memory_size: 84978434048 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 } registers_per_core_limit: 65536 registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
runtime_version { major: 12 minor: 8 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""}


def gpu_target(topology: str) -> Target:
    """``h100`` (one GPU) or ``h100x8`` (8 GPUs of one host): compile-only CUDA devices, no GPU needed (the CUDA
    PJRT plugin must be installed; ``JAX_PLATFORMS=cpu`` keeps it from looking for a driver)."""
    from jax.experimental import topologies
    name, _, n = topology.lower().removeprefix("gpu:").partition("x")
    if name not in GPU_TARGET_CONFIGS:
        raise ValueError(f"unknown GPU {name!r}; known: {sorted(GPU_TARGET_CONFIGS)}")
    cfg = GPU_TARGET_CONFIGS[name]
    topo = topologies.get_topology_desc(platform="cuda", target_config=cfg, topology=f"1x1x{int(n or 1)}")
    hbm = int(re.search(r"device_memory_size: (\d+)", cfg).group(1))
    devices = list(topo.devices)
    return Target(topology, 1, devices, devices[0].device_kind, hbm, backend="gpu")


def target_for(topology: str, num_slices: int = 1) -> Target:
    """A TPU topology (``v4:2x2x2`` ...) or a GPU one (``h100``, ``h100x8``)."""
    if topology.lower().removeprefix("gpu:").split("x")[0] in GPU_TARGET_CONFIGS:
        if num_slices != 1:
            raise ValueError("num_slices is for TPU topologies")
        return gpu_target(topology)
    return tpu_target(topology, num_slices)


def tpu_target(topology: str, num_slices: int = 1) -> Target:
    """The devices of TPU topology ``topology`` (``v4:2x2x1``, ``v4:2x2x2``, ``v5e:2x2``, ``v5e:4x4`` ...)."""
    from jax.experimental import topologies
    gen = topology.split(":")[0].split("-")[0]
    topo = topologies.get_topology_desc(platform="tpu", topology_name=topology,
                                        chip_config_name=CHIP_CONFIG.get(gen, "default"),
                                        chips_per_host_bounds=(2, 2, 1), num_slices=num_slices)
    devices = list(topo.devices)
    kind = devices[0].device_kind
    if kind not in HBM_BYTES:
        raise ValueError(f"unknown HBM size of {kind!r} (topology {topology}); known: {sorted(HBM_BYTES)}")
    return Target(topology, num_slices, devices, kind, HBM_BYTES[kind])


# ----------------------------------------------------------------------------------------------- compiling
_USED = re.compile(r"Used ([\d.]+)([KMGT]?) of ([\d.]+)([KMGT]?) (\w+)")
_TEMPS = re.compile(r"HLO temporaries \(([\d.]+)([KMGT]?)\) exceeds available HBM \(([\d.]+)([KMGT]?)\)")
_UNIT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory(compiled) -> dict:
    ma = compiled.memory_analysis()
    out = {n: int(getattr(ma, n, 0) or 0) for n in ("argument_size_in_bytes", "output_size_in_bytes",
                                                      "temp_size_in_bytes", "alias_size_in_bytes",
                                                      "generated_code_size_in_bytes")}
    out["per_device_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                               + out["temp_size_in_bytes"] - out["alias_size_in_bytes"])
    return out


def flops_of(compiled, n_devices: int) -> float:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    if not ca:                  # the deviceless CUDA compiler gives no cost analysis
        return None
    return float(ca.get("flops", 0.0)) * n_devices


def refusal(msg: str) -> dict | None:
    """What the TPU compiler's out-of-memory refusal says: the memory space (``hbm``, or ``vmem``: on-chip vector
    memory, a fusion or kernel too big for it, not a batch too large for the chip) and the sizes it names."""
    if "RESOURCE_EXHAUSTED" not in msg and "Ran out of memory" not in msg:
        return None
    out = {"space": "hbm", "error": msg.strip().splitlines()[0][:300]}
    m = _USED.search(msg)
    if m:
        out.update(space=m.group(5).lower(), needed_bytes=int(float(m.group(1)) * _UNIT[m.group(2)]),
                   available_bytes=int(float(m.group(3)) * _UNIT[m.group(4)]))
    m = _TEMPS.search(msg)
    if m:      # the temporaries alone exceed what the program may use: arguments / outputs come on top
        out.update(temp_bytes=int(float(m.group(1)) * _UNIT[m.group(2)]),
                   available_bytes=int(float(m.group(3)) * _UNIT[m.group(4)]))
    return out


def try_compile(lower, batch: int, n_devices: int) -> dict:
    """Compile ``lower(batch)``: {per_device_bytes, memory, compile_s, compiler_flops_raw} or, when the TPU
    compiler refuses it for want of memory, {oom: {space, needed / temp / available bytes}, per_device_bytes: the
    HBM bytes it reported needing (None if it did not say)}. Any other error is raised."""
    t0 = time.perf_counter()
    try:
        compiled = lower(batch).compile()
    except Exception as e:  # noqa: BLE001  (XlaRuntimeError / JaxRuntimeError; only the memory refusal is expected)
        why = refusal(str(e))
        if why is None:
            raise
        need = why.get("needed_bytes") if why["space"] == "hbm" else None
        return {"oom": why, "per_device_bytes": need, "compile_s": time.perf_counter() - t0}
    mem = memory(compiled)
    return {"oom": None, "per_device_bytes": mem["per_device_bytes"], "memory": mem,
            "compile_s": time.perf_counter() - t0, "compiler_flops_raw": flops_of(compiled, n_devices)}


def largest_batch(lower, n_devices: int, hbm: int, ways: int, known: dict, budget_s: float,
                  limit: int = 1 << 16, known_failures: dict | None = None) -> dict:
    """Largest multiple of ``ways`` whose program compiles within ``hbm`` bytes per device. ``known``: {batch: bytes
    or None (refused)} already compiled. A bracket by doubling / halving, then interpolation on the compiled sizes
    (bisection when it lands on an end) until the two ends are ``ways`` apart, or ``budget_s`` is spent."""
    t0 = time.perf_counter()
    seen = dict(known)

    failures = dict(known_failures or {})

    def fits(b):
        if b not in seen:
            r = try_compile(lower, b, n_devices)
            # refused: negative, the size the compiler named (the temporaries alone: a lower bound) or None
            need = r["oom"] and (r["per_device_bytes"] or r["oom"].get("temp_bytes"))
            seen[b] = r["per_device_bytes"] if not r["oom"] else (-need if need else None)
            if r["oom"]:
                failures[b] = r["oom"]
        v = seen[b]
        return v is not None and v > 0 and v <= hbm

    def size(b):
        v = seen.get(b)
        return abs(v) if v else None

    def out(lo, hi, complete):
        return {"batch": lo, "first_not_fitting": hi, "complete": complete, "search_s": time.perf_counter() - t0,
                "limited_by": failures.get(hi, {}).get("space", "hbm" if hi else None),
                "compiled": {str(b): (abs(v) if v else None) for b, v in sorted(seen.items())}}

    def timed_out():
        return time.perf_counter() - t0 > budget_s

    start = min(known) if known else ways
    lo, hi = (start, None) if fits(start) else (None, start)
    while lo is None:                                   # halve until one fits
        b = max(ways, (hi // 2) // ways * ways)
        if b >= hi:
            return out(0, hi, True)
        if fits(b):
            lo = b
        else:
            hi = b
        if timed_out() and lo is None:
            return out(0, hi, False)
    while hi is None:                                   # double until one does not
        b = lo * 2
        if b > limit:
            return out(lo, None, False)
        if fits(b):
            lo = b
        else:
            hi = b
        if timed_out():
            return out(lo, hi, False)
    while hi - lo > ways:
        if timed_out():
            return out(lo, hi, False)
        s_lo, s_hi = size(lo), size(hi)
        mid = (lo + hi) // 2
        if s_lo and s_hi and s_hi > s_lo:               # interpolate where the size reaches the HBM, kept in the
            guess = lo + (hi - lo) * (hbm - s_lo) / (s_hi - s_lo)        # bracket's middle half (it shrinks by 1/4+)
            guess = min(max(guess, lo + (hi - lo) / 4), hi - (hi - lo) / 4)
            mid = int(guess) // ways * ways
        mid = min(max(mid // ways * ways, lo + ways), hi - ways)
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return out(lo, hi, True)


# ----------------------------------------------------------------------------------------------- configs
def config_family(name: str) -> tuple[str, str]:
    """``(family, name)``: family magnet / musicgen / codec; ``family:name`` or inferred from the name."""
    if ":" in name:
        fam, n = name.split(":", 1)
        return fam, n
    if name in CODEC_CONFIGS or name.startswith("encodec_"):
        return "codec", name
    if name.startswith("musicgen_"):
        return "musicgen", name
    return "magnet", name


def lm_config_dict(name: str, *, dtype: str, attention_impl: str, remat: str, mesh: str, batch: int):
    """The ml_collections config the train CLI would read, with this run's overrides."""
    fam, n = config_family(name)
    if fam == "musicgen":
        import importlib.util
        spec = importlib.util.spec_from_file_location("musicgen_configs", ROOT / "configs" / "musicgen.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        c = mod.get_config(n)
    else:
        from magnet_jax.configs import get_config
        c = get_config(n)
    c.model.dtype = dtype
    c.model.attention_impl = attention_impl
    if remat != "config":
        c.model.remat = remat == "true"
    for part in filter(None, mesh.split(",")):
        k, v = part.split("=")
        c.mesh[k.strip()] = int(v)
    if batch:
        c.batch_size = batch
    return c


def t5_module(text_name: str, text_dim: int):
    """An abstract frozen T5 encoder (``nnx.eval_shape``) as ``training.loop`` loads it (fp32, HIGHEST)."""
    from flax import nnx

    from magnet_jax.text.presets import TINY_TOKENIZER, canonical_t5_name, tiny_t5_config
    from magnet_jax.text.t5 import T5Encoder, T5EncoderConfig
    if text_name in ("", "tiny"):
        from magnet_jax.text.tokenizer import load_t5_tokenizer
        cfg = tiny_t5_config(text_dim, len(load_t5_tokenizer(str(TINY_TOKENIZER))))
    else:
        key = canonical_t5_name(text_name) or text_name
        if key not in T5_ARCH:
            raise ValueError(f"no T5 architecture for {text_name!r} here; known: {sorted(T5_ARCH)}")
        cfg = T5EncoderConfig(**T5_ARCH[key])
    if cfg.d_model != text_dim:
        raise ValueError(f"T5 {text_name!r} has width {cfg.d_model}, the LM expects {text_dim}")
    return nnx.eval_shape(lambda: T5Encoder(cfg, rngs=nnx.Rngs(0)))


def prebuild_splash_kernels(mcfg, tensor_ways: int) -> None:
    """Builds (and caches) the splash kernels the programs will use, before any mesh context: the kernel's mask
    tables are concrete arrays made with ``jnp.array`` under ``ensure_compile_time_eval``, which under
    ``jax.set_mesh`` of a topology's devices (no runtime behind them) fails ("'Executable' object has no attribute
    'local_devices'"). Lengths: the window and the decoding's usable length, padded to the kernel block."""
    from magnet_jax.model.attention import SPLASH_BLOCK, splash_kernel
    T = mcfg.segment_frames
    heads = mcfg.num_heads // tensor_ways
    for length in {-(-t // SPLASH_BLOCK) * SPLASH_BLOCK for t in (T, T - T % max(getattr(mcfg, "span_len", 1), 1))}:
        for ctx in (None, getattr(mcfg, "subcodes_context", None)):
            splash_kernel(length, heads, ctx, interpret=False)      # the call in attention._splash_local


def sds(tree, shardings):
    import jax
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)


# ----------------------------------------------------------------------------------------------- programs
def lm_programs(name: str, target: Target, *, dtype="bfloat16", attention_impl="auto", remat="config", mesh="",
                batch=0, model_overrides=None, generation_overrides=None, lora_rank=0):
    """``{"train": lower(batch), "generate": lower(batch)}`` for LM config ``name`` on ``target`` plus what the
    report needs (mesh, ways, params). Everything abstract; call inside ``target_backend("tpu")``. ``lora_rank``
    > 0: the train step of LoRA fine-tuning (``config.lora_rank``: the adapters in the state, the base a frozen input
    of the step, as ``training.loop`` builds it)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from magnet_jax import sharding
    from magnet_jax.model.attention import resolve_impl
    from magnet_jax.training import state as S
    from magnet_jax.training.config import TrainConfig
    from magnet_jax.training.loop import BATCH_KEYS, lm_class
    from magnet_jax.training.optim import finite_update_bound, make_optimizer, make_schedule
    from magnet_jax.training.step import make_train_step

    c = lm_config_dict(name, dtype=dtype, attention_impl=attention_impl, remat=remat, mesh=mesh, batch=batch)
    if model_overrides:
        c.model.update(model_overrides)
    if lora_rank:
        c.lora_rank = int(lora_rank)
    cfg = TrainConfig.from_config(c)
    mcfg = cfg.model
    m = sharding.make_mesh(**dataclasses.asdict(cfg.mesh), devices=target.devices)
    ways = m.shape["data"] * m.shape["fsdp"]
    rep = NamedSharding(m, P())
    cls = lm_class(mcfg)
    if resolve_impl(mcfg.attention_impl) == "splash":
        prebuild_splash_kernels(mcfg, m.shape["tensor"])
    abstract = nnx.eval_shape(lambda: cls(mcfg, rngs=nnx.Rngs(0)))
    graphdef, params, pspecs = S.split_model(abstract)
    tx, schedule = make_optimizer(cfg.optim), make_schedule(cfg.optim)
    adapter, frozen = cfg.lora.adapter(), ()
    if adapter is None:
        trained, tspecs = params, pspecs
    else:                       # LoRA: the state trains the adapters; the base is the step's frozen last argument
        from magnet_jax.model.lora import init_adapters
        from magnet_jax.training.lora import adapter_specs
        tspecs = adapter_specs(params, pspecs, adapter)
        trained = jax.eval_shape(lambda: init_adapters(params, adapter, jax.random.PRNGKey(0)))
        frozen = (sds(params, S.to_shardings(pspecs, m)),)
    specs = S.state_specs(tx, trained, tspecs)
    state = S.abstract_state(tx, trained, specs, m)
    t5 = t5_module(cfg.text.name, mcfg.text_dim)
    t5_graphdef, t5_state = nnx.split(t5)
    t5_params = sds(nnx.to_pure_dict(t5_state), jax.tree.map(lambda _: rep, nnx.to_pure_dict(t5_state)))
    step = make_train_step(graphdef, t5_graphdef, cfg.step, tx, schedule, mcfg, specs, m, BATCH_KEYS,
                           update_bound=finite_update_bound(cfg.optim), lora=adapter, base_specs=pspecs)
    b_sh = sharding.batch_shardings(BATCH_KEYS, m)
    T, St, K = mcfg.segment_frames, int(cfg.text.max_length), mcfg.n_q
    seed_key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=rep)

    def lower_train(B):
        batch = {"codes": jax.ShapeDtypeStruct((B, K, T), jnp.int32, sharding=b_sh["codes"]),
                 "padding_mask": jax.ShapeDtypeStruct((B, T), jnp.bool_, sharding=b_sh["padding_mask"]),
                 "text_ids": jax.ShapeDtypeStruct((B, St), jnp.int32, sharding=b_sh["text_ids"]),
                 "text_mask": jax.ShapeDtypeStruct((B, St), jnp.int32, sharding=b_sh["text_mask"])}
        with sharding.use_mesh(m):
            return step.lower(state, batch, t5_params, seed_key, *frozen)

    # generation: the LM's own state (nnx.State), parameters sharded by the rules
    g_graphdef, g_state = nnx.split(abstract)
    pure = nnx.to_pure_dict(g_state)
    g_specs = nnx.to_pure_dict(sharding.state_partition_specs(g_state))
    nnx.replace_by_pure_dict(g_state, sds(pure, S.to_shardings(g_specs, m)))
    bspec = lambda *ax: NamedSharding(m, sharding.logical_to_spec(ax))  # noqa: E731

    if cfg.step.objective == "musicgen":
        from magnet_jax.decoding.config import MusicGenGenerationConfig
        from magnet_jax.decoding.musicgen import _generate
        gcfg = MusicGenGenerationConfig.from_dict(c.generation.to_dict())
        if generation_overrides:
            gcfg = dataclasses.replace(gcfg, **generation_overrides)

        def lower_generate(B):
            th = jax.ShapeDtypeStruct((B, St, mcfg.text_dim), jnp.float32, sharding=bspec("batch", None, None))
            tm = jax.ShapeDtypeStruct((B, St), jnp.int32, sharding=bspec("batch", None))
            prompt = jax.ShapeDtypeStruct((B, K, 0), jnp.int32, sharding=bspec("batch", None, None))
            with sharding.use_mesh(m):
                return _generate.lower(g_graphdef, g_state, th, tm, prompt, seed_key, None, config=gcfg, frames=T)
        gen_steps = None
    else:
        from magnet_jax.decoding import GenerationConfig
        from magnet_jax.decoding.magnet import _decode
        from magnet_jax.decoding.spans import units_for
        d = c.generation.to_dict()
        d["decoding_steps"] = tuple(d["decoding_steps"])
        gcfg = GenerationConfig.from_dict(d)
        if generation_overrides:
            gcfg = gcfg.replace(**generation_overrides)
        Tu = units_for(gcfg.span_arrangement, mcfg.span_len).usable(T, mcfg.span_len)
        key = jax.eval_shape(lambda: jax.random.key(0))
        rng = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=rep)

        def lower_generate(B):
            th = jax.ShapeDtypeStruct((B, St, mcfg.text_dim), jnp.float32, sharding=bspec("batch", None, None))
            tm = jax.ShapeDtypeStruct((B, St), jnp.int32, sharding=bspec("batch", None))
            known = jax.ShapeDtypeStruct((B, K, Tu), jnp.int32, sharding=bspec("batch", None, None))
            keep = jax.ShapeDtypeStruct((B, Tu), jnp.bool_, sharding=bspec("batch", None))
            with sharding.use_mesh(m):
                return _decode.lower(g_graphdef, gcfg, g_state, th, tm, known, keep, rng)
        gen_steps = tuple(gcfg.decoding_steps)

    n_params = sum(int(x.size) for x in jax.tree.leaves(params))
    info = {"mesh": dict(m.shape), "ways": ways, "params": n_params,
            "trainable_params": sum(int(x.size) for x in jax.tree.leaves(trained)),
            "lora": None if adapter is None else adapter.to_dict(), "config_batch_size": int(cfg.data.batch_size),
            "frames": T, "text_len": St, "num_layers": mcfg.num_layers, "remat": bool(mcfg.remat),
            "dtype": mcfg.dtype, "scan_layers": bool(mcfg.scan_layers), "objective": cfg.step.objective,
            "t5": cfg.text.name, "decoding_steps": gen_steps, "mcfg": mcfg}
    return {"train": lower_train, "generate": lower_generate}, info


def codec_programs(name: str, target: Target, *, batch=0, mesh=""):
    """``{"train": lower(batch)}`` of the codec trainer (``codec_training.step.make_train_step``) for codec config
    ``name`` (configs/codec.py). Its state is built once on one CPU device (the codec is small), then abstracted."""
    import importlib.util

    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from magnet_jax import sharding
    from magnet_jax.codec_training.loop import build
    from magnet_jax.codec_training.state import replicated
    from magnet_jax.codec_training.step import make_train_step, wav_sharding
    spec = importlib.util.spec_from_file_location("codec_configs", ROOT / "configs" / "codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("tiny" if name == "tiny_codec" else name)
    for part in filter(None, mesh.split(",")):
        k, v = part.split("=")
        c.mesh[k.strip()] = int(v)
    if batch:
        c.batch_size = batch
    cpu_mesh = sharding.make_mesh(data=1, devices=jax.devices("cpu")[:1])
    graphdef, disc_graphdef, tx_g, tx_d, state = build(c, cpu_mesh)
    m = sharding.make_mesh(**c.mesh.to_dict(), devices=target.devices)
    ways = m.shape["data"] * m.shape["fsdp"]
    abstract = sds(state, replicated(state, m))
    n_params = sum(int(x.size) for x in jax.tree.leaves(state.params))
    del state
    step = make_train_step(graphdef, disc_graphdef, c, tx_g, tx_d, m, abstract)
    N = int(round(float(c.segment_seconds) * int(c.model.sample_rate)))
    C = int(c.model.channels)
    seed_key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=NamedSharding(m, P()))

    def lower_train(B):
        wav = jax.ShapeDtypeStruct((B, C, N), jnp.float32, sharding=wav_sharding(m))
        with sharding.use_mesh(m):
            return step.lower(abstract, wav, seed_key)
    info = {"mesh": dict(m.shape), "ways": ways, "params": n_params, "config_batch_size": int(c.batch_size),
            "segment_samples": N, "dtype": "float32", "objective": "codec"}
    return {"train": lower_train}, info


# ----------------------------------------------------------------------------------------------- one report
def lm_flops(name: str, target: Target, program: str, prog_batch: int, info: dict, **kw) -> dict:
    """The program's FLOPs for the whole slice from XLA's cost analysis of one- and two-layer unrolled builds
    (loops of one trip for generate), extrapolated to the real depth (see the module doc)."""
    L = info["num_layers"]
    over = {}
    if program == "generate" and info["decoding_steps"] is not None:
        over["generation_overrides"] = {"decoding_steps": (1,) * len(info["decoding_steps"])}
    f = {}
    for n in (1, 2):
        progs, _ = lm_programs(name, target, model_overrides={"num_layers": n, "scan_layers": False}, **kw, **over)
        f[n] = flops_of(progs[program](prog_batch).compile(), len(target.devices))
        if f[n] is None:
            return {"flops_per_step": None, "flops_method": "the compiler gives no cost analysis"}
    total = f[1] + (L - 1) * (f[2] - f[1])
    out = {"flops_per_step": total, "flops_1_layer": f[1], "flops_2_layers": f[2]}
    if program == "generate":
        steps = info["decoding_steps"]
        if steps is not None:      # MAGNeT: one step per stage counted; the real program runs sum(steps)
            out["flops_per_step"] = total * sum(steps) / len(steps)
            mean = sum(steps) / len(steps)
            out["flops_method"] = ("cost_analysis of 1- and 2-layer unrolled builds with one decoding step per "
                                   f"stage, extrapolated to {L} layers, x mean steps per stage {mean}")
        else:                      # MusicGen: the fori_loop's body (one token) is counted once
            out["flops_method"] = ("cost_analysis of 1- and 2-layer unrolled builds (prefill + one loop step counted "
                                   "once), extrapolated to the depth, x frames / 2")
            out["flops_per_step"] = total * info["frames"] / 2
    else:
        out["flops_method"] = f"cost_analysis of 1- and 2-layer unrolled builds, extrapolated to {L} layers"
    return out


def estimate_for(info: dict, batch: int, target: Target) -> dict | None:
    """``benchmarks/tpu_estimate.py``'s arithmetic for this train step's shape (its own assumptions: FSDP over all
    chips, remat), recorded next to what the compiler found."""
    if target.backend != "tpu":
        return None
    from benchmarks.tpu_estimate import estimate
    from magnet_jax.training.metrics import PEAK_FLOPS
    return estimate(info["mcfg"], info["params"], batch, len(target.devices), text_len=info["text_len"],
                    hbm=target.hbm_bytes, peak=PEAK_FLOPS.get(target.device_kind))


def report(name: str, target: Target, program: str, lower, info: dict, batch: int, *, search: bool,
           search_budget_s: float, flops: bool, lm_kw: dict, attention: dict) -> dict:
    import jax
    n = len(target.devices)
    r = try_compile(lower, batch, n)
    row = {"config": name, "program": program, "topology": target.topology, "num_slices": target.num_slices,
           "devices": n, "device_kind": target.device_kind, "hbm_bytes": target.hbm_bytes,
           "batch_size": batch, "mesh": info["mesh"], **attention,
           **{k: v for k, v in info.items() if k not in ("mesh", "mcfg")},
           "per_device_bytes": r["per_device_bytes"],
           "fits": (not r["oom"]) and r["per_device_bytes"] <= target.hbm_bytes,
           "compile_s": round(r["compile_s"], 2), "jax": jax.__version__,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if r["oom"]:
        row["compile_error"] = r["oom"]
    else:
        row["memory"] = r["memory"]
        row["compiler_flops_raw"] = r["compiler_flops_raw"]
    row["param_bytes_fp32"] = 4 * info["params"]
    if flops and program in ("train", "generate") and "num_layers" in info:
        row.update(lm_flops(name, target, program, batch, info, **lm_kw))
    elif not r["oom"] and "num_layers" not in info:
        row["flops_per_step"] = r["compiler_flops_raw"]
        row["flops_method"] = "cost_analysis of the program (no loops over layers)"
    if program == "train" and "mcfg" in info:
        from magnet_jax.training.metrics import train_flops_per_step
        row["model_flops_analytic"] = train_flops_per_step(info["mcfg"], batch, info["frames"], info["text_len"])
        row["estimate"] = estimate_for(info, batch, target)
    if search:
        need = r["oom"] and (r["per_device_bytes"] or r["oom"].get("temp_bytes"))
        known = {batch: (-need if need else None) if r["oom"] else r["per_device_bytes"]}
        row["largest_batch"] = largest_batch(lower, n, target.hbm_bytes, info["ways"], known, search_budget_s,
                                             known_failures={batch: r["oom"]} if r["oom"] else None)
    return row


def merge_json(path: Path, rows: list[dict], machine: dict) -> None:
    """Adds ``rows`` to the results file at ``path``, replacing entries of the same (config, topology, program,
    batch, mesh, attention, remat, dtype)."""
    def key(r):
        return json.dumps([r.get(k) for k in ("config", "program", "topology", "num_slices", "batch_size", "mesh",
                                              "attention_impl", "remat", "dtype")], sort_keys=True)
    old = json.loads(path.read_text()).get("results", []) if path.exists() else []
    new_keys = {key(r) for r in rows}
    merged = [r for r in old if key(r) not in new_keys] + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, "results": merged}, indent=2, default=str))
    print(f"wrote {path} ({len(rows)} new / {len(merged)} entries)")


# ----------------------------------------------------------------------------------------------- CLI
flags.DEFINE_list("config", ["magnet_small_10secs"], "configs: magnet_* / tiny (configs/magnet.py), musicgen_* "
                  "(configs/musicgen.py), encodec_* (configs/codec.py); or family:name")
flags.DEFINE_list("topology", ["v4:2x2x1"], "TPU topologies, e.g. v4:2x2x1, v4:2x2x2, v4:4x4x4, v5e:2x2, v5e:4x4")
flags.DEFINE_integer("num_slices", 1, "slices (multislice over DCN)")
flags.DEFINE_integer("batch_size", 0, "global train batch (0 = the config's)")
flags.DEFINE_integer("generate_batch_size", 0, "generate batch before CFG doubling (0 = 2 per data-parallel way)")
flags.DEFINE_list("programs", ["train", "generate"], "train, generate (codec configs: train only)")
flags.DEFINE_string("attention_impl", "auto", "config.model.attention_impl (auto = splash on TPU)")
flags.DEFINE_string("dtype", "bfloat16", "compute dtype (config.model.dtype); the master weights stay float32")
flags.DEFINE_enum("remat", "config", ["config", "true", "false"], "per-layer remat: the config's, or forced")
flags.DEFINE_string("mesh", "", "mesh overrides, e.g. data=1,fsdp=-1 (default: the config's mesh section)")
flags.DEFINE_boolean("search_batch", True, "search the largest global batch that fits (compiles)")
flags.DEFINE_float("search_budget_s", 900.0, "time cap of one batch search, seconds")
flags.DEFINE_boolean("flops", True, "FLOPs from two extra 1- / 2-layer compiles (see the module doc)")
flags.DEFINE_string("json", str(ROOT / "benchmarks" / "results" / "tpu_compile.json"), "results file (merged)")
FLAGS = flags.FLAGS


def _fmt(row: dict) -> str:
    gb = lambda b: "-" if b is None else f"{b / GiB:.2f}"  # noqa: E731
    lb = row.get("largest_batch", {})
    fl = row.get("flops_per_step")
    return (f"{row['config']:22s} {row['topology']:9s} {row['program']:8s} mesh={row['mesh']} "
            f"attn={row.get('attention_resolved')} B={row['batch_size']}: {gb(row['per_device_bytes'])} / "
            f"{gb(row['hbm_bytes'])} GiB per device, fits={row['fits']}, largest batch "
            f"{lb.get('batch', '-')}{'' if lb.get('complete', True) else ' (search capped)'}, "
            f"{'-' if fl is None else f'{fl / 1e12:.1f}'} TFLOP, compile {row['compile_s']:.1f} s")


def main(argv):
    del argv
    if any(t.lower().removeprefix("gpu:").split("x")[0] in GPU_TARGET_CONFIGS for t in FLAGS.topology):
        # deviceless CUDA: no autotuning, and XLA's Triton GEMM fusions fail to tile without it ("Couldn't find
        # output tile sizes"); cuBLAS GEMMs instead. Read when the backends start, which is after this.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_enable_triton_gemm=false").strip()
    from benchmarks.common import machine  # here: benchmarks.common re-executes the process with tcmalloc
    from magnet_jax.model.attention import resolve_impl, target_backend
    rows = []

    def failed(topology, name, program, stage, e, t0, **more):
        """A row for what could not be built or compiled (an unsupported topology, multislice, a lowering error):
        recorded, and the next program goes on."""
        row = {"config": name, "program": program, "topology": topology, "num_slices": FLAGS.num_slices,
               "batch_size": FLAGS.batch_size or None, "attention_impl": FLAGS.attention_impl, "fits": False,
               "per_device_bytes": None, "failed_at": stage, "error": f"{type(e).__name__}: {str(e).strip()[:400]}",
               "compile_s": round(time.perf_counter() - t0, 2), "jax": jax.__version__,
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **more}
        print(f"{name} {topology} {program}: {stage} failed: {row['error']}", flush=True)
        rows.append(row)
        merge_json(Path(FLAGS.json), rows[-1:], machine())

    import jax
    for topology in FLAGS.topology:
        t0 = time.perf_counter()
        try:
            target = target_for(topology, FLAGS.num_slices)
        except Exception as e:  # noqa: BLE001  (recorded: unknown topology string, multislice unsupported ...)
            failed(topology, ",".join(FLAGS.config), ",".join(FLAGS.programs), "topology", e, t0)
            continue
        for name in FLAGS.config:
            fam, _ = config_family(name)
            with target_backend(target.backend):
                t0 = time.perf_counter()
                try:
                    if fam == "codec":
                        progs, info = codec_programs(name, target, batch=FLAGS.batch_size, mesh=FLAGS.mesh)
                        attention, lm_kw, wanted = {"attention_impl": None, "attention_resolved": None}, {}, ["train"]
                    else:
                        lm_kw = dict(dtype=FLAGS.dtype, attention_impl=FLAGS.attention_impl, remat=FLAGS.remat,
                                     mesh=FLAGS.mesh, batch=FLAGS.batch_size)
                        progs, info = lm_programs(name, target, **lm_kw)
                        attention = {"attention_impl": FLAGS.attention_impl,
                                     "attention_resolved": resolve_impl(FLAGS.attention_impl, target.backend)}
                        wanted = FLAGS.programs
                except Exception as e:  # noqa: BLE001  (recorded: the mesh or the model cannot be built for it)
                    failed(topology, name, ",".join(FLAGS.programs), "build", e, t0,
                           devices=len(target.devices), device_kind=target.device_kind, hbm_bytes=target.hbm_bytes)
                    continue
                for program in wanted:
                    if program == "train":
                        batch = FLAGS.batch_size or info["config_batch_size"]
                    else:
                        batch = FLAGS.generate_batch_size or 2 * info["ways"]
                    t0 = time.perf_counter()
                    try:
                        row = report(name, target, program, progs[program], info, batch, search=FLAGS.search_batch,
                                     search_budget_s=FLAGS.search_budget_s, flops=FLAGS.flops, lm_kw=lm_kw,
                                     attention=attention)
                    except Exception as e:  # noqa: BLE001  (recorded; the compiler's memory refusals are rows)
                        failed(topology, name, program, "compile", e, t0, batch_size=batch, mesh=info["mesh"],
                               devices=len(target.devices), device_kind=target.device_kind,
                               hbm_bytes=target.hbm_bytes, **attention)
                        continue
                    print(_fmt(row), flush=True)
                    rows.append(row)
                    merge_json(Path(FLAGS.json), rows[-1:], machine())


if __name__ == "__main__":
    app.run(main)
