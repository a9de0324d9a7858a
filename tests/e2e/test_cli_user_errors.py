"""Issue 32 probes of tools/evaluate.py and tools/app.py: a user error is one line on stderr and exit 2, never a
traceback (generate / train / tokenize have theirs next to their other CLI tests)."""
import socket

import pytest

from tests.helpers import run_tool


def _one_line(p, needle):
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert needle in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr[-2000:]


@pytest.mark.parametrize("seconds", ["inf", "nan"])
def test_evaluate_non_finite_seconds(tmp_path, seconds):
    p = run_tool(["tools/evaluate.py", f"--manifest={tmp_path / 'valid.jsonl'}", f"--out={tmp_path / 'out'}",
                  f"--seconds={seconds}"], check=False, timeout=300)
    _one_line(p, f"--seconds={seconds} must be a finite number > 0")
    assert not (tmp_path / "out").exists()


def test_app_port_in_use(tmp_path):
    """Refused at start-up, before the model is loaded (it was a traceback after the preload)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = run_tool(["tools/app.py", "--model=config:tiny", f"--port={port}"], check=False, timeout=300,
                     env_extra={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HOME": str(tmp_path / "hf")})
    _one_line(p, f"cannot serve on 127.0.0.1:{port}: the port is in use")
