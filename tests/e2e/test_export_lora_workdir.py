"""End to end: a LoRA workdir (``--config.lora_rank``: its checkpoints hold the adapters alone) restored from its
newest checkpoint by ``training.trained_lm`` and ``tools/export_lm.py --workdir``: the base is rebuilt from
``init_from`` and the EMA adapters merged in, giving the logits of the trainer's own merged export."""
import shutil

import numpy as np

from magnet_jax.convert import load_lm_safetensors
from magnet_jax.training.trained_lm import load_trained_lm
from tests.e2e.test_train_cli import _train_args, dataset  # noqa: F401  (the module's tokenized corpus fixture)
from tests.e2e.test_train_lora_cli import LORA, _logits, _tiny_base
from tests.helpers import run_tool


def test_lora_workdir_restores_and_exports_merged(dataset, tmp_path):  # noqa: F811
    data_dir, codec = dataset
    base = _tiny_base(tmp_path / "base")
    work = tmp_path / "lora"
    run_tool(_train_args(data_dir, codec, work, 2, 1, [*LORA, f"--config.init_from={base}"]))
    # the trainer's merged export at step 2, set aside: the workdir's newest weights are then its checkpoint's
    want_dir = tmp_path / "trainer_export"
    shutil.move(str(work / "export"), str(want_dir))
    want = _logits(load_lm_safetensors(want_dir))
    assert np.abs(want - _logits(load_lm_safetensors(base))).max() > 1e-4        # the adapters were trained

    trained = load_trained_lm(work)
    assert (trained.step, trained.weights) == (2, "ema") and trained.origin.endswith("checkpoints/2")
    np.testing.assert_allclose(_logits(trained.lm), want, atol=1e-5, rtol=0)
    raw = load_trained_lm(work, ema=False)                                        # the raw adapters, merged
    assert raw.weights == "params" and np.isfinite(_logits(raw.lm)).all()

    out = tmp_path / "exported"
    p = run_tool(["tools/export_lm.py", f"--workdir={work}", f"--out={out}", "--format=magnet_jax"])
    assert "checkpoints/2 (step 2, ema)" in p.stdout
    np.testing.assert_allclose(_logits(load_lm_safetensors(out)), want, atol=1e-5, rtol=0)
