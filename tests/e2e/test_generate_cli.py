"""tools/generate.py as a user runs it (subprocesses, the tiny random-init model), and tools/run.sh's fallback."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import ROOT, run_tool

FAST = ["--decoding_steps=4,2,2,2"]


def gen(args, tmp_path, check=True, **env):
    return run_tool(["tools/generate.py", *args], check=check, env_extra={"HF_HOME": str(tmp_path / "hf"), **env})


def test_generate_cli(tmp_path):
    out = tmp_path / "out"
    p = gen(["--model=config:tiny", "--text=calm piano", "--text=happy rock", "--duration=1", f"--out_dir={out}",
             *FAST, "--span_arrangement=stride1"], tmp_path)
    wavs, pngs = sorted(out.glob("*.wav")), sorted(out.glob("*.png"))
    assert [w.stem for w in wavs] == ["000_calm_piano_seed0", "001_happy_rock_seed0"] and len(pngs) == 2
    data, sr = sf.read(wavs[0])
    assert sr == 32000 and len(data) == 32000
    assert "wrote" in p.stdout and str(pngs[0]) in p.stdout
    # the same command again: refused before generating, files untouched; --overwrite replaces them
    before = wavs[0].read_bytes()
    p = gen(["--model=config:tiny", "--text=calm piano", "--duration=1", f"--out_dir={out}", *FAST, "--seed=0"],
            tmp_path, check=False)
    assert p.returncode == 2 and "--overwrite" in p.stderr and wavs[0].read_bytes() == before
    # continuation and infill from a WAV on disk
    gen(["--model=config:tiny", "--text=jazz", f"--prompt_wav={wavs[0]}", "--duration=1.5",
         f"--out_dir={tmp_path / 'cont'}", *FAST], tmp_path)
    assert sf.info(str(next((tmp_path / "cont").glob("*.wav")))).duration == pytest.approx(1.5)
    gen(["--model=config:tiny", "--text=drums", f"--infill_wav={wavs[1]}", "--infill_start=0.2", "--infill_end=0.5",
         f"--out_dir={tmp_path / 'fill'}", *FAST], tmp_path)
    filled, _ = sf.read(str(next((tmp_path / "fill").glob("*.wav"))))
    assert len(filled) == pytest.approx(32000, abs=1600) and np.isfinite(filled).all()


def test_help_exits_0(tmp_path):
    p = gen(["--help"], tmp_path, check=False)
    assert p.returncode == 0 and "--decoding_steps" in p.stdout and "--[no]anneal_temp" in p.stdout


@pytest.mark.parametrize("args,message", [
    (["--text= "], "empty --text"),
    (["--text="], "empty --text"),                    # explicitly empty: an error, never the model's example
    (["--text_file=BLANK"], "no text in --text_file"),
    (["--model=config:nope", "--text=x"], "unknown config"),
    (["--model=./no/such/model", "--text=x"], "no such local folder"),
    (["--model=facebook/magnet-small-10secs", "--text=x"], "local folder"),       # offline, not cached
    (["--text=x", "--infill_start=1"], "infill needs"),
    (["--text=x", "--infill_wav=WAV"], "infill needs"),
    (["--text=x", "--prompt_wav=MISSING"], "no such file"),
    (["--text=x", "--prompt_wav=TXT"], "not a readable audio file"),
    (["--text=x", "--duration=nan"], "--duration=nan"),
    (["--text=x", "--duration=inf"], "--duration=inf"),
    (["--text=x", "--duration=0.001"], "at least one frame"),
    (["--text=x", "--decoding_steps=a,b"], "give integers"),
    (["--text=x", "--max_cfg_coef=nan"], "max_cfg_coef"),
    (["--text_file=LATIN1"], "not UTF-8"),
    (["--text=x", "--num_samples=0"], "--num_samples=0"),
    (["--text=x", "--batch_size=0"], "--batch_size=0"),
    (["--text=x", "--out_dir=BLOCKED"], "not writable"),
    (["--text=x", "--seed=9223372036854775808"], "2**63"),                         # issue 32
    (["--text=x", "--num_samples=1000000000"], "--allow_large"),
    (["--text=x", "--duration=1e9"], "24 h"),
    (["--text_file=FOLDER"], "is a folder"),
])
def test_generate_cli_errors(tmp_path, args, message):
    """One line naming the problem, exit 2, no traceback, nothing written."""
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 music".encode("latin-1"))
    (tmp_path / "blocker").write_text("a file, not a folder")
    (tmp_path / "blank.txt").write_text("\n \n")
    sf.write(tmp_path / "ok.wav", np.zeros(8000, np.float32), 8000)
    subs = {"WAV": tmp_path / "ok.wav", "MISSING": tmp_path / "missing.wav", "TXT": tmp_path / "notes.txt",
            "LATIN1": tmp_path / "latin1.txt", "FOLDER": tmp_path, "BLANK": tmp_path / "blank.txt",
            "BLOCKED": tmp_path / "blocker" / "out"}
    args = [f"{a.split('=')[0]}={subs.get(a.split('=', 1)[1], a.split('=', 1)[1])}" for a in args]
    if not any(a.startswith("--model") for a in args):
        args = ["--model=config:tiny", *args]
    if not any(a.startswith("--out_dir") for a in args):
        args.append(f"--out_dir={tmp_path / 'out'}")
    p = gen(args, tmp_path, check=False)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert message in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert not list(tmp_path.glob("out/*.wav"))


@pytest.mark.parametrize("damage,needle", [
    # a config recording the file's size / CRC-32 (every export now) says "truncated"; an older one finds the damage
    # when safetensors cannot read the file
    ("truncate", ("magnet_jax_lm.safetensors' has", "the safetensors file is truncated",
                  "magnet_jax_lm.safetensors' is not a readable safetensors file")),
    ("not_json", ("magnet_jax_config.json' is not valid JSON",)),
])
def test_damaged_bundled_model_names_the_file(tmp_path, damage, needle):
    """Issue 32: a truncated bundled safetensors / a config that is not JSON were tracebacks naming neither the file
    nor its format."""
    import shutil

    from magnet_jax.bundled.package import WEIGHTS_DIR
    model = shutil.copytree(WEIGHTS_DIR, tmp_path / "bundled_copy")
    if damage == "truncate":
        st = model / "lm" / "magnet_jax_lm.safetensors"
        st.write_bytes(st.read_bytes()[: st.stat().st_size // 3])
    else:
        (model / "lm" / "magnet_jax_config.json").write_text("{'model': not json")
    p = gen([f"--model={model}", "--text=x", "--duration=1", f"--out_dir={tmp_path / 'out'}"], tmp_path, check=False)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert any(n in p.stderr for n in needle) and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert len(p.stderr.strip().splitlines()) == 1 and not list(tmp_path.glob("out/*.wav")), p.stderr[-2000:]


@pytest.mark.slow
def test_long_duration_warns_first(tmp_path):
    p = gen(["--model=config:tiny", "--text=x", "--duration=9", f"--out_dir={tmp_path / 'out'}", *FAST], tmp_path)
    assert "WARNING" in p.stdout and "window" in p.stdout
    assert p.stdout.index("WARNING") < p.stdout.index("wrote")
    assert sf.info(str(next((tmp_path / "out").glob("*.wav")))).duration == pytest.approx(9.0)


def test_offline_fallback_says_so(tmp_path):
    p = gen(["--model=facebook/magnet-small-10secs", "--offline_fallback=config:tiny", "--text=lofi beat",
             "--duration=0.5", f"--out_dir={tmp_path / 'out'}", "--decoding_steps=2,1,1,1"], tmp_path)
    assert "RANDOM-INIT" in p.stdout and "not reachable" in p.stdout
    assert len(list((tmp_path / "out").glob("*.wav"))) == 1


def _run_sh(args, tmp_path, **env):
    """tools/run.sh on a stand-in venv whose python is this one (install.sh finds it installed: no pip)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".magnet_installed_base").touch()
    e = dict(os.environ, PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf"), MAGNET_VENV=str(venv), **env)
    return subprocess.run(["bash", "tools/run.sh", *args], cwd=ROOT, env=e, capture_output=True, text=True,
                          timeout=600)


def test_run_sh_mistyped_local_path_fails_clearly(tmp_path):
    p = _run_sh([f"--model={tmp_path / 'my-model'}", f"--out_dir={tmp_path / 'out'}"], tmp_path, HF_HUB_OFFLINE="0")
    assert p.returncode == 2 and "no such local folder" in p.stderr, p.stderr[-2000:]
    assert "RANDOM-INIT" not in p.stdout and not list(tmp_path.glob("out/*.wav"))


def test_run_sh_falls_back_quickly_when_offline(tmp_path):
    """No hub (HF_HUB_OFFLINE here; a closed endpoint in the unit test of the probe), model not cached: the
    offline model, with the whole message, and no retries. No --text (the main job as the README runs it): the
    bundled model's own example description, one in its training corpus' wording, not the released models'."""
    from magnet_jax.audio_files import safe_stem
    from magnet_jax.bundled.package import WEIGHTS_DIR, example_description
    from magnet_jax.pipelines.base import EXAMPLE_DESCRIPTION
    p = _run_sh(["--duration=0.5", "--decoding_steps=2,1,1,1", f"--out_dir={tmp_path / 'out'}"],
                tmp_path, HF_HUB_OFFLINE="1")
    assert p.returncode == 0, p.stderr[-2000:]
    note = p.stdout[p.stdout.index("NOTE"):]
    assert "hf download facebook/magnet-small-10secs" in note and "'bundled'" in note, note
    assert "trained offline" in note and "RANDOM-INIT" not in note
    example = example_description(WEIGHTS_DIR)
    assert example != EXAMPLE_DESCRIPTION and EXAMPLE_DESCRIPTION not in p.stdout
    assert [line for line in p.stdout.splitlines() if repr(example) in line], p.stdout[-2000:]
    assert [w.name for w in (tmp_path / "out").glob("*.wav")] == [safe_stem(example, 0, 0) + ".wav"]


def test_no_text_generates_the_models_example_description(tmp_path):
    """tools/generate.py without --text: a model of the released kind (here config:tiny) keeps the 80s example."""
    from magnet_jax.audio_files import safe_stem
    from magnet_jax.pipelines.base import EXAMPLE_DESCRIPTION
    p = gen(["--model=config:tiny", "--duration=0.5", f"--out_dir={tmp_path / 'out'}", "--decoding_steps=2,1,1,1"],
            tmp_path)
    assert len([line for line in p.stdout.splitlines() if EXAMPLE_DESCRIPTION in line]) == 1, p.stdout[-2000:]
    assert [w.name for w in (tmp_path / "out").glob("*.wav")] == [safe_stem(EXAMPLE_DESCRIPTION, 0, 0) + ".wav"]
