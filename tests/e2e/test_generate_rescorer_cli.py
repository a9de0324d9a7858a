"""tools/generate.py with a companion MusicGen (--rescorer): rescoring and hybrid in one run, one-line errors."""
import pytest
import soundfile as sf

from tests.helpers import run_tool

FAST = ["--model=config:tiny", "--decoding_steps=3,1,1,1", "--duration=1"]


def gen(args, tmp_path, check=True):
    return run_tool(["tools/generate.py", *FAST, *args], check=check, env_extra={"HF_HOME": str(tmp_path / "hf")},
                    timeout=1500)   # two models compiled in one run (about 20 min on this loaded 2-core machine)


def test_rescored_hybrid_generation_cli(tmp_path):
    out = tmp_path / "out"
    gen(["--text=calm piano", "--rescorer=config:tiny", "--rescorer_weight=0.5", "--rescorer_weight_on=rescorer",
         "--hybrid_prefix_seconds=0.4", "--cfg_coef=2", f"--out_dir={out}"], tmp_path)
    data, sr = sf.read(str(next(out.glob("*.wav"))))
    assert sr == 32000 and len(data) == 32000


@pytest.mark.slow
def test_rescorer_errors_exit_2(tmp_path):
    p = gen(["--text=x", "--rescorer_weight=0.5", f"--out_dir={tmp_path / 'a'}"], tmp_path, check=False)
    assert p.returncode == 2 and "needs a rescorer" in p.stderr and "Traceback" not in p.stderr
    p = gen(["--text=x", "--rescorer=config:tiny_audio", "--hybrid_prefix_seconds=0.4", f"--out_dir={tmp_path / 'b'}"],
            tmp_path, check=False)
    assert p.returncode == 2 and "pick a config with MAGNeT's codec" in p.stderr and "Traceback" not in p.stderr
