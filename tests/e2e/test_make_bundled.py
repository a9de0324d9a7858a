"""End to end: tools/make_bundled.sh on a tiny synthetic corpus with tiny step counts (corpus step skipped: the
corpus is given), then the assembled folder loads offline, the tokens have train + valid splits, the evaluation
wrote its rows, and a re-run skips every step. Slow (several minutes on 2 cores: two trainers compile)."""
import json
import os
import subprocess

import numpy as np
import pytest

from tests.helpers import ROOT

SR = 16000
FAMILIES = [("flute", "pipe", (1,)), ("trumpet", "brass", range(1, 10))]


def _corpus(folder):
    import soundfile as sf
    rng = np.random.default_rng(0)
    lines = {"train": [], "valid": []}
    for i in range(9):
        split = "valid" if i % 3 == 2 else "train"
        ins, fam, harmonics = FAMILIES[i % 2]
        bpm, f0 = 60 + 20 * i, 220 * 2 ** (i / 12)
        t = np.arange(3 * SR) / SR
        env = (np.sin(np.pi * t * bpm / 60) ** 2)
        wav = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in harmonics) * env * 0.3
        wav = (wav + 0.003 * rng.standard_normal(len(t))).astype(np.float32)
        (folder / split).mkdir(parents=True, exist_ok=True)
        path = folder / split / f"clip{i}.wav"
        sf.write(path, wav, SR)
        meta = dict(work=f"w{i}", split=split, instrument=ins, instrument_family=fam, bpm=float(bpm),
                    key="A", mode="major", meter="4/4", composer="", era="baroque", genre="chorale",
                    description=f"{ins} chorale in A major, {bpm} bpm")
        path.with_suffix(".json").write_text(json.dumps(meta))
        lines[split].append(dict(path=str(path), duration=3.0, sample_rate=SR, info_path=str(path.with_suffix(".json")),
                                 description=meta["description"], split=split, work=meta["work"]))
    for split, ls in lines.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in ls))


def _run(work, corpus):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}   # one CPU device, as a user's shell
    env.update(PYTHONPATH=str(ROOT), CORPUS=str(corpus), INSTALL="0", CODEC_STEPS="3", CODEC_BATCH="2",
               LM_STEPS="3", LM_BATCH="2", LM_EVAL_EVERY="3", EVAL_CLIPS="3", EVAL_SECONDS="2",
               EXTRA_CODEC_FLAGS="--config.eval_batches=1 --config.log_every=1",
               EXTRA_LM_FLAGS="--config.eval_batches=1 --config.log_every=1 --config.warmup_steps=1 "
                              "--config.model.segment_duration=2.0")
    p = subprocess.run(["bash", "tools/make_bundled.sh", str(work)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=3000)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_make_bundled_reproduces_a_loadable_model_and_resumes(tmp_path):
    corpus, work = tmp_path / "corpus", tmp_path / "work"
    _corpus(corpus)
    _run(work, corpus)
    from magnet_jax.data.input_pipeline import data_source, find_builder_dir
    from magnet_jax.pipelines.magnet import MagnetPipeline
    b = find_builder_dir(str(work / "tokens"))
    assert len(data_source(b, "train")) >= 6 and len(data_source(b, "valid")) >= 3
    pipe = MagnetPipeline.from_pretrained(str(work / "bundled"))
    assert pipe.sample_rate == SR and pipe.frame_rate == 50 and pipe.lm.config.dim == 256
    # its example description: from the clips the LM trained on (trumpet: 3 of 6 train clips, flute 3: a tie, and
    # "brass" < "pipe"), in the corpus' wording, with a tempo and a key
    example = json.loads((work / "bundled" / "bundled.json").read_text())["example_description"]
    assert pipe.example_description == example and "trumpet" in example and "A major" in example, example
    res = json.loads((work / "eval" / "eval.json").read_text())
    assert set(res["rows"]) == {"real", "model", "random"} and res["rows"]["real"]["n"] == 3
    assert np.isfinite(res["codec"]["mel_distance"]) and (work / "eval" / "spectrograms.png").is_file()
    metrics = [json.loads(x) for x in (work / "lm_train" / "metrics.jsonl").read_text().splitlines()]
    assert any(k.startswith("eval") for m in metrics for k in m)             # held-out loss on the valid split
    again = _run(work, corpus)
    assert again.count("skipped") == 9, again                               # 8 steps, 2 tokenized splits
