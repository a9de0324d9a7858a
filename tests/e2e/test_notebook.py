"""colab/magnet_demo.ipynb: executed top to bottom (the bundled model), and its install cell from a clone."""
import subprocess
import sys

import nbformat

from tests.helpers import ROOT

NOTEBOOK = ROOT / "colab" / "magnet_demo.ipynb"


def test_colab_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    import nbclient
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("MAGNET_DEMO_MODEL", "bundled")
    monkeypatch.setenv("MAGNET_DEMO_DURATION", "3")
    monkeypatch.setenv("MAGNET_DEMO_LONG", "12")   # past the 10 s window: two windows
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(html) >= 5 and len(images) >= 4           # audio players and spectrograms


_PROBE = """
import importlib.util, subprocess, sys
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "magnet_jax" else real(name, *a)
subprocess.run = lambda cmd, check=False: print("CMD", cmd)
exec(compile(open(sys.argv[1]).read(), "install-cell", "exec"))
"""


def test_install_cell_installs_the_clone_it_runs_in(tmp_path):
    """Run from colab/ of a clone (magnet-jax is not on PyPI): ``pip install -e <clone>[audio]``."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "pip" in c.source)
    (tmp_path / "cell.py").write_text(cell.source)
    p = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / "cell.py")], cwd=ROOT / "colab",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    cmd = p.stdout.split("CMD", 1)[1]
    assert "'-e'" in cmd and f"'{ROOT}[audio]'" in cmd and "torch" not in cmd
    outside = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / "cell.py")], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert outside.returncode != 0 and "checkout not found" in outside.stderr


FINETUNE = ROOT / "colab" / "finetune.ipynb"


def test_finetune_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    """colab/finetune.ipynb on the bundled model: six synthetic clips -> LoRA fine-tune (a few steps) -> held-out
    loss before / after -> generate -> audio player + spectrogram."""
    import nbclient
    nb = nbformat.read(FINETUNE, as_version=4)
    for k, v in dict(MAGNET_FT_MODEL="bundled", MAGNET_FT_STEPS="3", MAGNET_FT_LORA_RANK="4",
                     MAGNET_FT_DURATION="4", MAGNET_FT_WORKDIR=str(tmp_path / "ft"), PYTHONPATH=str(ROOT),
                     XLA_FLAGS="").items():
        monkeypatch.setenv(k, v)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "held-out loss per stage (before -> after)" in text and "LoRA rank 4" in text
    assert (tmp_path / "ft" / "export" / "adapter.safetensors").is_file()
    assert [o for o in outputs if "text/html" in o.get("data", {})]          # the audio player
    assert [o for o in outputs if "image/png" in o.get("data", {})]          # the spectrogram
