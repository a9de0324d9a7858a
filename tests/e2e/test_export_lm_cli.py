"""tools/export_lm.py on a tools/train.py workdir (config.json recorded by the trainer's own helper, a checkpoint
written by its Checkpointer, then a newer WORKDIR/export by its export_ema): the audiocraft export holds the
checkpoint's EMA (read back by our loader, the codec as compression_state_dict.bin), the magnet_jax export the newer
export's; an exported folder exports again through --model; user errors exit 2 with one line."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.helpers import ROOT, tiny_50hz_codec

STEP, EXPORT_STEP = 5, 7


def _run(*args):
    return subprocess.run([sys.executable, "tools/export_lm.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny MAGNeT workdir trained with t5-small's width on a 50 Hz EnCodec: one checkpoint (step 5) whose EMA
    differs from its params, as training leaves it."""
    from magnet_jax import sharding
    from magnet_jax.configs import get_config
    from magnet_jax.training import TrainConfig, make_optimizer
    from magnet_jax.training import state as S
    from magnet_jax.training.checkpoint import Checkpointer
    from magnet_jax.training.loop import initial_model
    from magnet_jax.training.run_config import record_config
    base = tmp_path_factory.mktemp("export_lm")
    codec = tiny_50hz_codec(base / "codec")
    c = get_config("tiny")
    c.text.name, c.model.text_dim = "t5-small", 512
    c.codec.name, c.codec.sample_rate = str(codec), 8000
    wd = base / "wd"
    wd.mkdir()
    record_config(wd, c)
    cfg = TrainConfig.from_config(c)
    mesh = sharding.make_mesh()
    graphdef, params, specs = initial_model("", 0, cfg.model, mesh)
    tx = make_optimizer(cfg.optim)
    state = S.init_state(tx, params, S.state_specs(tx, params, specs), mesh)
    ema = jax.tree.map(lambda p: p + 0.01, state.params)
    state = state.replace(step=state.step + STEP, ema=ema)
    ckpt = Checkpointer(wd / "checkpoints")
    ckpt.save(STEP, state, force=True)
    ckpt.close()
    return wd, graphdef, state, cfg


def _flat(tree):
    return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_export_lm_cli(workdir, tmp_path):
    from flax import nnx

    from magnet_jax.convert import load_audiocraft_checkpoint
    from magnet_jax.convert.checkpoint import flat_params
    from magnet_jax.training.loop import export_ema
    wd, graphdef, state, cfg = workdir
    out = tmp_path / "ac"
    r = _run(f"--workdir={wd}", f"--out={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"checkpoints/{STEP} (step {STEP}, ema)" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["compression_state_dict.bin", "state_dict.bin"]
    ck = load_audiocraft_checkpoint(out, cache=False)
    assert (ck.t5_name, ck.kind, ck.lm.config) == ("t5-small", "music", cfg.model)
    want = flat_params(nnx.merge(graphdef, jax.device_get(state.ema)))
    for k, v in flat_params(ck.lm).items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)
    # a non-empty --out is refused (one line, exit 2)
    r = _run(f"--workdir={wd}", f"--out={out}")
    assert r.returncode == 2 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # a newer export at the end of training is read instead; --format=magnet_jax
    newer = jax.tree.map(lambda p: p - 0.01, state.params)
    export_ema(graphdef, newer, cfg.model, wd / "export", EXPORT_STEP)
    mj = tmp_path / "mj"
    r = _run(f"--workdir={wd}", f"--out={mj}", "--format=magnet_jax")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"export (step {EXPORT_STEP}, ema)" in r.stdout
    ck = load_audiocraft_checkpoint(mj, cache=False)
    assert (ck.t5_name, ck.kind) == ("t5-small", "music")
    want = flat_params(nnx.merge(graphdef, jax.device_get(newer)))
    for k, v in flat_params(ck.lm).items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)
    # --model: that folder again, as audiocraft's; a T5 audiocraft cannot load is refused in one line
    r = _run(f"--model={mj}", f"--out={tmp_path / 'again'}", "--t5=tiny", "--codec=none")
    assert r.returncode == 2 and "text encoder 'tiny'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _run(f"--model={mj}", f"--out={tmp_path / 'again'}", f"--codec={wd.parent / 'codec'}")
    assert r.returncode == 0, r.stderr[-3000:]
    back = load_audiocraft_checkpoint(tmp_path / "again", cache=False)
    for k, v in flat_params(back.lm).items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)
