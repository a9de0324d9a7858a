"""End to end: tokenize a corpus with the CLI, train `configs/magnet.py:tiny` with the CLI, kill -9 and
resume (losses identical to the uninterrupted run), and a 2-process multi-host run."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

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
    return ["tools/train.py", "--config=configs/magnet.py:tiny", f"--workdir={workdir}",
            f"--config.data_dir={data_dir}",
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
    # the exported weights are the EMA (loadable without torch)
    from magnet_jax.convert import load_lm_safetensors
    meta = json.loads((work / "export" / "magnet_jax_config.json").read_text())
    assert meta["weights"] == "ema" and meta["step"] == STEPS
    assert load_lm_safetensors(work / "export").config.dim == 64


def test_layer_loop_trains_like_the_scan(dataset, full_run, tmp_path):
    """``--config.model.scan_layers=false`` (a run-time field: the layers looped instead of scanned) trains the
    same model: the same losses as the scanned run, up to float32 reassociation."""
    data_dir, codec = dataset
    want = read_metrics(full_run)
    run_tool(_train_args(data_dir, codec, tmp_path, STEPS, EVERY, [*FULL_EXTRA, "--config.model.scan_layers=false"]))
    got = read_metrics(tmp_path)
    assert sorted(got) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([got[s]["loss"] for s in got], [want[s]["loss"] for s in got], rtol=1e-4)
    assert len({got[s]["loss"] for s in got}) == STEPS


def test_text_losses_score_each_clip_with_its_own_another_and_no_description(full_run):
    """jobs.finetune_eval.text_losses (benchmarks/text_information.py): the held-out loss per stage with each clip's
    own description is the trainer's evaluation; another clip's description or none changes a trained LM's loss;
    a random-init LM cannot use the text, so the description it gets hardly matters (its random cross-attention
    still moves a stage's loss by a few hundredths of a nat, up to ~0.05 of ~8.2: bounded at 1.5 % of the loss)."""
    from magnet_jax.jobs.finetune_eval import heldout_loss, text_losses
    from magnet_jax.training.trained_lm import train_config
    cfg, _ = train_config(full_run)
    export = str(full_run / "export")
    got = text_losses(cfg, export)
    assert set(got) == {"own", "other", "null"}
    for v in got.values():
        assert len(v) == 5 and all(np.isfinite(x) for x in v.values())      # 4 stages + their mean
    assert got["own"] == heldout_loss(cfg, export)
    assert got["null"] != got["own"] and got["other"] != got["own"]
    rand = text_losses(cfg, "")
    for k in range(4):
        key = f"eval_loss_stage{k}"
        tol = 0.015 * rand["own"][key]
        assert abs(rand["other"][key] - rand["own"][key]) < tol and abs(rand["null"][key] - rand["own"][key]) < tol


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
            "--config.mesh.data=2", "--config.mesh.fsdp=2",
            # eval on every shard: processes whose shard holds fewer batches must not leave the others hanging
            "--config.eval_split=train", "--config.eval_every=2", "--config.eval_batches=100"])
        procs.append(subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-4000:]
    rows = read_metrics(tmp_path / "mh")                # written by process 0 only
    assert sorted(rows) == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in rows.values())
    evals = [json.loads(line) for line in (tmp_path / "mh" / "metrics.jsonl").read_text().splitlines()
             if "eval_loss" in line]
    assert [e["step"] for e in evals] == [2, 4] and all(np.isfinite(e["eval_loss"]) for e in evals)
    ck = tmp_path / "mh" / "checkpoints" / "4"
    assert (ck / "data" / "process_0-of-2.json").exists() and (ck / "data" / "process_1-of-2.json").exists()


@pytest.mark.slow
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


# ---------------------------------------------------------------- user errors: one line, exit 2, no traceback
@pytest.mark.parametrize("extra,needle", [
    (["--config.learning_rat=0.1"], "unknown config field 'learning_rat'"),
    (["--config.model.dimm=3"], "unknown config field 'dimm' (did you mean 'dim'?)"),
    (["--config.checkpoint_every=0"], "config.checkpoint_every=0 must be at least 1"),
    (["--config.learning_rate=nan"], "config.learning_rate=nan is not a finite number"),
    (["--config.model.dtype=float16"], "not supported for training (no loss scaling)"),
    (["--config=configs/magnet.py:nope"], "unknown config 'nope'"),
    (["--config.seed=-1"], "config.seed=-1 must be in [0, 2**32)"),                      # issue 32
    (["--config.text.max_length=0"], "config.text.max_length=0 must be at least 1"),
    (["--config.mesh.data=3"], "config.mesh: mesh {'data': 3, 'fsdp': 1, 'tensor': 1} needs 3 devices, have 1"),
])
def test_config_errors_are_one_line_exit_2(tmp_path, extra, needle):
    args = ["tools/train.py", f"--workdir={tmp_path / 'w'}", f"--config.data_dir={tmp_path}", *extra]
    p = run_tool(args, check=False, timeout=300, env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    assert p.returncode == 2, p.stderr[-2000:]
    assert needle in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "w" / "checkpoints").exists()          # nothing trained, nothing saved


def test_missing_dataset_is_one_line_exit_2(tmp_path):
    for data_dir, needle in ((tmp_path / "nope", "does not exist"), (tmp_path, "no TFDS dataset")):
        p = run_tool(["tools/train.py", f"--workdir={tmp_path / 'w'}", f"--config.data_dir={data_dir}"],
                     check=False, timeout=300)
        assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]


def test_bad_config_file_and_workdir_are_one_line_exit_2(tmp_path):
    """Issue 32: a missing --config file and a workdir that is a file or not writable were tracebacks."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    cases = [([f"--config={tmp_path / 'nope.py'}", f"--workdir={tmp_path / 'w'}"], "No such file or directory"),
             ([f"--workdir={tmp_path / 'a_file'}"], "is a file, not a folder")]
    if os.geteuid() != 0:                   # root writes anywhere
        cases.append(([f"--workdir={tmp_path / 'ro' / 'w'}"], "is not writable"))
    for args, needle in cases:
        p = run_tool(["tools/train.py", *args, f"--config.data_dir={tmp_path}"], check=False, timeout=300)
        assert p.returncode == 2 and needle in p.stderr, p.stderr[-2000:]
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr[-2000:]


@pytest.mark.parametrize("split", ["nope", "train[:0%]"])
def test_bad_eval_split_is_refused_before_the_first_step(dataset, tmp_path, split):
    """Issue 32: a bad eval split was found at the first evaluation, after training steps were spent."""
    data_dir, codec = dataset
    work = tmp_path / "w"
    p = run_tool(_train_args(data_dir, codec, work, 4, 2, [f"--config.eval_split={split}", "--config.eval_every=2"]),
                 check=False)
    assert p.returncode == 2 and f"config.eval_split={split!r} is not usable" in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    assert not (work / "metrics.jsonl").exists() and not (work / "checkpoints").exists()


def test_help_exits_0_and_lists_the_config_fields():
    p = run_tool(["tools/train.py", "--help"], check=False, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    for field in ("learning_rate", "checkpoint_every", "max_consecutive_skips", "--config.model.", "dtype",
                  "--config.text.", "max_length", "configs/magnet.py:"):
        assert field in p.stdout, field


# ---------------------------------------------------------------- damaged checkpoints and non-finite training
def _biggest(step_dir):
    return max((q for q in (step_dir / "state").rglob("*") if q.is_file()), key=lambda q: q.stat().st_size)


def _flip_bytes(step_dir):
    victim = _biggest(step_dir)
    data = bytearray(victim.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    victim.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [pytest.param("flip", marks=pytest.mark.slow), "zero"])
def test_damaged_latest_checkpoint_resumes_from_the_previous_one(dataset, full_run, tmp_path, damage):
    """Before: flipped bytes were resumed silently (NaN later, exit 0); a zero-byte file crashed with a traceback."""
    data_dir, codec = dataset
    work = tmp_path / "w"
    args = _train_args(data_dir, codec, work, 6, EVERY, FULL_EXTRA)
    run_tool(args)
    step_dir = work / "checkpoints" / "6"
    if damage == "flip":
        _flip_bytes(step_dir)
    else:
        _biggest(step_dir).write_bytes(b"")
    p = run_tool(_train_args(data_dir, codec, work, STEPS, EVERY, FULL_EXTRA))
    assert "checkpoint step 6 is damaged" in p.stderr and "resumed from step 3" in p.stderr, p.stderr[-3000:]
    assert list((work / "checkpoints_damaged").glob("6-*"))
    got, want = read_metrics(work), read_metrics(full_run)
    for s in range(4, STEPS + 1):                        # steps 4.. re-run from step 3: identical to the full run
        assert got[s]["loss"] == want[s]["loss"], s


def test_non_finite_training_stops_and_keeps_the_last_good_checkpoint(dataset, tmp_path):
    """A huge learning rate: skipped updates are counted; N in a row stop the run with a clear error,
    and no non-finite state is saved."""
    data_dir, codec = dataset
    work = tmp_path / "w"
    p = run_tool(_train_args(data_dir, codec, work, 40, 2, ["--config.learning_rate=1e30", "--config.warmup_steps=0",
                                                            "--config.schedule=constant", "--config.max_grad_norm=0",
                                                            "--config.max_consecutive_skips=3"]), check=False)
    assert p.returncode == 1 and "consecutive updates skipped" in p.stderr and "Traceback" not in p.stderr, \
        p.stderr[-3000:]
    rows = read_metrics(work)
    assert max(rows) < 40 and sum(not r["finite"] for r in rows.values()) >= 3
    from magnet_jax.training.checkpoint import verify_step
    for d in (work / "checkpoints").iterdir():
        if d.name.isdigit():
            assert verify_step(d, work / "checkpoints" / "integrity" / f"{d.name}.json") is None
