"""End to end: ``tools/train.py --config=configs/magnet.py:hybrid_tiny`` (the Hybrid-MAGNeT objective) on a
tokenized toy corpus: 2 steps with evaluation and the EMA export, which loads back as a HybridMagnetLM."""
import json

import numpy as np

from tests.helpers import read_metrics, run_tool, tiny_50hz_codec, write_corpus


def test_hybrid_config_trains_evaluates_and_exports(tmp_path):
    codec = tiny_50hz_codec(tmp_path / "codec")
    manifest = write_corpus(tmp_path / "corpus", n=12)   # >= batch_size clips: the eval split has a full batch
    run_tool(["tools/tokenize_dataset.py", f"--manifest={manifest}", f"--codec={codec}",
              f"--data_dir={tmp_path / 'tfds'}", "--segment_seconds=3", "--min_seconds=1", "--progress=false"])
    work = tmp_path / "work"
    run_tool(["tools/train.py", "--config=configs/magnet.py:hybrid_tiny", f"--workdir={work}",
              f"--config.data_dir={tmp_path / 'tfds'}", "--config.total_steps=2", "--config.checkpoint_every=2",
              f"--config.codec.name={codec}", "--config.codec.sample_rate=8000", "--config.batch_size=8",
              "--config.eval_split=train", "--config.eval_every=2", "--config.eval_batches=1"])
    rows = read_metrics(work)
    assert sorted(rows) == [1, 2] and all(np.isfinite(r["loss"]) for r in rows.values())
    evals = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if "eval_loss" in line]
    assert len(evals) == 1 and all(np.isfinite(evals[0][f"eval_loss_stage{k}"]) for k in range(4))
    from magnet_jax.convert import load_audiocraft_checkpoint
    from magnet_jax.model.hybrid import HybridMagnetLM
    ck = load_audiocraft_checkpoint(work / "export")
    assert isinstance(ck.lm, HybridMagnetLM) and ck.lm_model == "hybrid_magnet" and ck.lm.config.delays == (0, 1, 2, 3)
