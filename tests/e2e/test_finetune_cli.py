"""End to end: ``tools/finetune.py`` on a tiny random model folder (LM + its codec) and a few synthetic WAVs:
tokenize with a held-out slice, fine-tune, held-out loss before / after, an export ``tools/generate.py`` loads alone;
the same command with more steps resumes without re-tokenizing; bad input is one line, exit 2."""
import json

import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from magnet_jax.configs import get_config
from magnet_jax.convert import save_lm_safetensors
from magnet_jax.model import MagnetLM
from magnet_jax.model.config import MagnetConfig
from tests.helpers import run_tool, tiny_50hz_codec


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    model = tiny_50hz_codec(root / "model")      # the codec next to the LM: the folder is a whole model
    save_lm_safetensors(MagnetLM(MagnetConfig.from_dict(get_config("tiny").model.to_dict()), rngs=nnx.Rngs(5)),
                        model, extra={"t5": "tiny"})
    audio = root / "audio"
    audio.mkdir()
    sr = 8000
    for i in range(6):
        t = np.arange(int(sr * (2.0 + 0.3 * i))) / sr
        sf.write(audio / f"calm_tone_{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32), sr)
    (audio / "calm_tone_0.txt").write_text("a calm sine tone")
    (audio / "calm_tone_1.json").write_text(json.dumps({"description": "soft low tone"}))
    return root, model, audio


ONE_DEVICE = {"XLA_FLAGS": ""}     # as a one-GPU user (conftest's 8 host devices need a batch of 8)


def _finetune(model, audio, work, steps, check=True):
    return run_tool(["tools/finetune.py", f"--model={model}", f"--audio_dir={audio}", f"--workdir={work}",
                     f"--steps={steps}", "--batch_size=2"], env_extra=ONE_DEVICE, check=check)


def _stages(stdout):
    return [line for line in stdout.splitlines() if line.strip().startswith("stage")]


def test_finetune_cli(inputs, tmp_path):
    root, model, audio = inputs
    work = tmp_path / "w"
    p = _finetune(model, audio, work, 4)
    rows = _stages(p.stdout)
    assert len(rows) == 4 and all("->" in r for r in rows), p.stdout
    summary = json.loads((work / "finetune.json").read_text())
    assert summary["steps"] == 4 and set(summary["before"]) == set(summary["after"]) >= {"eval_loss_stage0"}
    assert summary["before"] != summary["after"] and all(np.isfinite(v) for v in summary["after"].values())
    # the held-out slice: 1 of the 6 files, the rest trains; descriptions from the sidecars, else the file name
    train = [json.loads(x) for x in (work / "data" / "train.jsonl").read_text().splitlines()]
    valid = [json.loads(x) for x in (work / "data" / "valid.jsonl").read_text().splitlines()]
    assert len(valid) == 1 and len(train) == 5
    desc = {c["path"].rsplit("/", 1)[1]: c["description"] for c in train + valid}
    assert desc["calm_tone_0.wav"] == "a calm sine tone" and desc["calm_tone_1.wav"] == "soft low tone"
    assert desc["calm_tone_2.wav"] == "calm tone 2"
    export = work / "export"
    assert str(export) in p.stdout and "tools/generate.py" in p.stdout
    meta = json.loads((export / "magnet_jax_config.json").read_text())
    assert meta["step"] == 4 and meta["t5"] == "tiny" and (export / "model.safetensors").is_file()

    # the export is a whole model: generate.py loads it alone (LM, codec, T5)
    out = tmp_path / "gen"
    run_tool(["tools/generate.py", f"--model={export}", "--text=calm tone", "--duration=1", f"--out_dir={out}",
              "--decoding_steps=4,2,2,2"], env_extra=ONE_DEVICE)
    wav, sr = sf.read(str(next(out.glob("*.wav"))))
    assert sr == 8000 and len(wav) == 8000 and np.isfinite(wav).all()

    # the same command, further: no re-tokenization, training resumes from step 4, "before" reused
    stamp = (work / "data" / "tokens" / "done").stat().st_mtime_ns
    p = _finetune(model, audio, work, 6)
    assert "tokenization skipped" in p.stdout and "resumed from step 4" in p.stderr
    assert (work / "data" / "tokens" / "done").stat().st_mtime_ns == stamp
    again = json.loads((work / "finetune.json").read_text())
    assert again["steps"] == 6 and again["before"] == summary["before"] and again["after"] != summary["after"]


@pytest.mark.parametrize("extra,message", [
    (["--audio_dir=EMPTY"], "no audio found"),
    (["--model=NOMODEL"], "cannot be loaded"),
    (["--steps=0"], "--steps=0"),
])
def test_finetune_cli_errors(inputs, tmp_path, extra, message):
    root, model, audio = inputs
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    subs = {"EMPTY": tmp_path / "empty", "NOMODEL": tmp_path / "no_model"}
    args = {"--model": str(model), "--audio_dir": str(audio), "--workdir": str(tmp_path / "w"), "--steps": "2"}
    for a in extra:
        k, v = a.split("=", 1)
        args[k] = str(subs.get(v, v))
    p = run_tool(["tools/finetune.py", *(f"{k}={v}" for k, v in args.items())], env_extra=ONE_DEVICE, check=False)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr
