"""End to end: tokenize a corpus with the CLI, train `configs/magnet.py:tiny` with the CLI, kill -9 and
resume (losses identical to the uninterrupted run), and a 2-process multi-host run."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, read_metrics, run_tool, tiny_50hz_codec, write_corpus


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    base = tmp_path_factory.mktemp("train_data")
    codec = tiny_50hz_codec(base / "codec")
    manifest = write_corpus(base / "corpus", n=12)
    run_tool(["tools/tokenize_dataset.py", f"--manifest={manifest}", f"--codec={codec}", f"--data_dir={base / 'tfds'}",
              "--segment_seconds=3", "--min_seconds=1", "--progress=false"])
    report = json.loads((base / "tfds" / "tokenize_report.json").read_text())
    assert len(report["kept"]) == 12 and not report["skipped"]
    return base / "tfds", codec


def _train_args(data_dir, codec, workdir, steps, every, extra=()):
    return ["tools/train.py", "--config=configs/magnet.py:tiny", f"--workdir={workdir}", f"--config.data_dir={data_dir}",
            f"--config.total_steps={steps}", f"--config.checkpoint_every={every}", "--config.seed=3",
            f"--config.codec.name={codec}", "--config.codec.sample_rate=8000", "--config.batch_size=8", *extra]


STEPS, EVERY = 9, 3
FULL_EXTRA = ["--config.eval_split=train", "--config.eval_every=9", "--config.learning_rate=0.01"]


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    """One uninterrupted run: checked for logging, and the reference for the kill / resume test."""
    data_dir, codec = dataset
    work = tmp_path_factory.mktemp("full")
    run_tool(_train_args(data_dir, codec, work, STEPS, EVERY, FULL_EXTRA))
    return work


def test_tiny_config_trains_and_logs(full_run):
    work = full_run
    rows = read_metrics(work)
    assert sorted(rows) == list(range(1, STEPS + 1))
    for r in rows.values():
        assert {"loss", "steps_per_sec", "tokens_per_sec", "mfu", "grad_norm", "learning_rate"} <= set(r)
        assert np.isfinite(r["loss"]) and r["tokens_per_sec"] > 0 and 0 < r["mfu"] < 1
    assert np.mean([rows[s]["loss"] for s in (7, 8, 9)]) < np.mean([rows[s]["loss"] for s in (1, 2, 3)])
    evals = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if "eval_loss" in line]
    assert [e["step"] for e in evals] == [STEPS] and all(f"eval_loss_stage{k}" in evals[0] for k in range(4))
    kept = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [3, 6, 9]
    assert list((work / "tensorboard").glob("events.out.tfevents.*"))


def test_codec_mismatch_is_refused(dataset, tmp_path):
    data_dir, codec = dataset
    p = run_tool(_train_args(data_dir, codec, tmp_path / "w", 2, 2, ["--config.codec.sample_rate=32000"]),
                 check=False)
    assert p.returncode != 0 and "different codec" in p.stderr


def test_sigkill_and_resume_reproduces_losses(dataset, full_run, tmp_path):
    data_dir, codec = dataset
    steps = STEPS
    want = read_metrics(full_run)
    killed = tmp_path / "killed"
    args = _train_args(data_dir, codec, killed, STEPS, EVERY, FULL_EXTRA)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (killed / "metrics.jsonl").exists() and max(read_metrics(killed) or [0]) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = max(read_metrics(killed))
    assert done_before < steps, "the run finished before it could be killed"
    run_tool(args)                                    # same command again: resumes
    got = read_metrics(killed)
    assert sorted(got) == list(range(1, steps + 1))
    for s in range(1, steps + 1):
        assert got[s]["loss"] == want[s]["loss"], (s, got[s]["loss"], want[s]["loss"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_multi_host(dataset, tmp_path):
    data_dir, codec = dataset
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(ROOT)
    procs = []
    for pid in range(2):
        args = _train_args(data_dir, codec, tmp_path / "mh", 4, 2, [
            f"--config.distributed.coordinator_address=127.0.0.1:{port}", "--config.distributed.num_processes=2",
            f"--config.distributed.process_id={pid}", "--config.distributed.local_device_count=2",
            "--config.mesh.data=2", "--config.mesh.fsdp=2"])
        procs.append(subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-4000:]
    rows = read_metrics(tmp_path / "mh")                # written by process 0 only
    assert sorted(rows) == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in rows.values())
    ck = tmp_path / "mh" / "checkpoints" / "4"
    assert (ck / "data" / "process_0-of-2.json").exists() and (ck / "data" / "process_1-of-2.json").exists()


def test_sigterm_saves_then_resumes_on_another_mesh(dataset, tmp_path):
    data_dir, codec = dataset
    work = tmp_path / "pre"
    args = _train_args(data_dir, codec, work, 1000, 1000)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((work / "metrics.jsonl").exists() and max(read_metrics(work) or [0]) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    saved = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    assert len(saved) == 1 and 2 <= saved[0] < 1000 and "SIGTERM" in err
    stop = saved[0]
    # resume with params / optimizer resharded onto an fsdp x tensor mesh
    run_tool(_train_args(data_dir, codec, work, stop + 2, 1000, ["--config.mesh.data=1", "--config.mesh.fsdp=4",
                                                                  "--config.mesh.tensor=2"]))
    rows = read_metrics(work)
    assert max(rows) == stop + 2 and np.isfinite(rows[stop + 2]["loss"])
