"""The tiny model's real sharded programs compile for a TPU v4 slice on this CPU host (benchmarks/tpu_compile.py):
the trainer's step (FSDP + tensor mesh, splash attention under shard_map, donated state) and generate (CFG batch,
the decoding loop; data-parallel mesh), with the TPU compiler of ``jax[tpu]``'s libtpu through
``jax.experimental.topologies``. A sharding mistake or a Mosaic / XLA:TPU lowering error fails here, without a TPU."""
import pytest

pytest.importorskip("libtpu", reason="jax[tpu] (libtpu) is not installed: bash tools/install.sh --tests installs it")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import tpu_compile as tc  # noqa: E402
from magnet_jax.model.attention import target_backend  # noqa: E402

TOPOLOGY = "v4:2x2x1"     # 4 chips (v4-8)


@pytest.fixture(scope="module")
def target():
    t = tc.tpu_target(TOPOLOGY)
    assert len(t.devices) == 4 and t.device_kind == "TPU v4" and t.hbm_bytes == 32 * tc.GiB
    return t


def _check(compiled, target, n_params: int, min_copies: int):
    """Memory figures positive and plausible: at least ``min_copies`` fp32 copies of the parameters per device
    (sharded over every device at most), well below the chip's HBM; a positive FLOP count; splash's Mosaic kernel
    in the program."""
    mem = tc.memory(compiled)
    per_device = mem["per_device_bytes"]
    assert mem["argument_size_in_bytes"] > 0 and mem["temp_size_in_bytes"] > 0, mem
    assert per_device > min_copies * 4 * n_params / len(target.devices), mem
    assert per_device < target.hbm_bytes / 4, mem
    assert tc.flops_of(compiled, len(target.devices)) > 0
    assert "tpu_custom_call" in compiled.as_text()          # the splash kernel, not the XLA fallback
    return mem


def test_tiny_train_step_compiles_for_tpu_v4_fsdp_tensor(target):
    with target_backend("tpu"):
        progs, info = tc.lm_programs("tiny", target, mesh="data=1,fsdp=2,tensor=2")   # attention_impl=auto
        assert info["mesh"] == {"data": 1, "fsdp": 2, "tensor": 2} and info["dtype"] == "bfloat16"
        compiled = progs["train"](8).compile()
    # params + two AdamW moments + EMA (fp32), sharded over fsdp x tensor at best
    mem = _check(compiled, target, info["params"], min_copies=4)
    assert mem["alias_size_in_bytes"] >= 4 * 4 * info["params"] / len(target.devices), mem   # the state is donated


def test_tiny_generate_compiles_for_tpu_v4(target):
    with target_backend("tpu"):
        progs, info = tc.lm_programs("tiny", target)
        assert info["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1}
        compiled = progs["generate"](8).compile()
    _check(compiled, target, info["params"], min_copies=1)     # the replicated fp32 weights at least
    # CFG's cond / null rows of an item are interleaved (decoding/model_logits.py): no row crosses devices. With
    # [cond; null] every layer and the guidance collective-permuted rows, and at magnet_small_10secs the permuted
    # logits fused into the sampling's softmax overflowed the 16 MiB vmem.
    assert "collective-permute" not in compiled.as_text()


def test_multislice_mesh_spans_slices_with_the_data_axis():
    """Two v4:2x2x1 slices: jax.make_mesh refuses devices of several slices; sharding.make_mesh puts the data axis
    across them (DCN) and keeps each slice's devices together."""
    from magnet_jax import sharding
    two = tc.tpu_target(TOPOLOGY, num_slices=2)
    m = sharding.make_mesh(data=-1, fsdp=2, devices=two.devices)
    assert dict(m.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    grid = np.vectorize(lambda d: d.slice_index)(m.devices)
    assert (grid[:2] == grid[0, 0, 0]).all() and (grid[2:] == grid[2, 0, 0]).all() and grid[0, 0, 0] != grid[2, 0, 0]


def test_splash_is_auto_on_tpu_only():
    from magnet_jax.model.attention import resolve_impl
    with target_backend("tpu"):
        assert resolve_impl("auto") == "splash"
    assert resolve_impl("auto") == ("splash" if jax.default_backend() == "tpu" else
                                    {"gpu": "dot_product_attention"}.get(jax.default_backend(), "xla"))
