"""Train-loop helpers: eval batches equalised across processes (no hang on uneven eval shards)."""
import numpy as np
from jax.experimental import multihost_utils

from magnet_jax.training import loop


def test_eval_batches_cut_to_the_smallest_process_count(monkeypatch):
    """Process 0 has 3 eval batches, process 1 only 1: both must evaluate exactly 1 (before: process 0
    waited forever in make_array_from_process_local_data for a batch process 1 never sent)."""
    monkeypatch.setattr(loop.jax, "process_count", lambda: 2)
    seen = {}

    def allgather(x):
        seen["local"] = int(x)
        return np.array([int(x), 1])
    monkeypatch.setattr(multihost_utils, "process_allgather", allgather)
    got = loop.eval_batches(iter([{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]), limit=3)
    assert seen["local"] == 3 and got == [{"i": 0}]


def test_eval_batches_single_process_takes_up_to_the_limit():
    assert len(loop.eval_batches(iter(range(10)), limit=4)) == 4
    assert loop.eval_batches(iter(range(2)), limit=4) == [0, 1]
