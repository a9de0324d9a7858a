"""The description a job uses when given no text: each model's own (the released models' 80s electronic track; the
bundled model's, a typical description of its training corpus, in its wording), and tools/run.sh fixes none."""
import json
import re

from magnet_jax.bundled import build, package
from magnet_jax.bundled.corpus import SOURCES
from magnet_jax.bundled.descriptions import FAMILIES, INSTRUMENTS, describe
from magnet_jax.pipelines.base import EXAMPLE_DESCRIPTION, TextToAudioPipeline
from tests.helpers import ROOT

NAMES = {name: fam for name, fam in INSTRUMENTS.values()}


def _meta(instrument, bpm=80.0, key="C", mode="major", genre=("baroque", "chorale", "Bach"), meter="4/4"):
    era, g, composer = genre
    return dict(instrument=instrument, instrument_family=NAMES[instrument], era=era, genre=g, composer=composer,
                bpm=bpm, key=key, mode=mode, meter=meter)


def training_meta_of(text: str) -> dict | None:
    """The corpus metadata ``text`` is a description of: one whose :func:`describe` gives exactly ``text`` (a
    corpus instrument and style, a key, a tempo), or None when no training description reads so."""
    key = re.search(r"\b([A-G][b#]?) (major|minor)\b", text)
    bpm = re.search(r"\b(\d+) bpm\b", text)
    if not (key and bpm):
        return None
    for era, genre, composer, *_ in SOURCES.values():
        for name in sorted(NAMES, key=len, reverse=True):                   # "saw synth lead" before "synth"
            if genre in text and name in text:
                meta = dict(instrument=name, era=era, genre=genre, composer=composer, bpm=float(bpm[1]),
                            key=key[1], mode=key[2], meter="4/4")
                if any(describe(meta, seed) == text for seed in range(4000)):
                    return meta
    return None


def test_example_is_a_typical_training_description_naming_tempo_and_key():
    metas = ([_meta("marimba", bpm=76.0, key="E")] * 3 + [_meta("celesta")] * 2          # mallet: 5 clips
             + [_meta("warm synth pad", bpm=100.0, key="E", genre=("folk", "jig", ""))] * 4)   # synth: 4
    text = build.example_description(metas)
    assert "marimba" in text and "76 bpm" in text and "E major" in text and "chorale" in text, text
    assert any(describe(dict(metas[0]), seed) == text for seed in range(100))   # describe's own wording
    assert build.example_description(list(reversed(metas))) == text                # not the order's choice
    tie = [_meta("marimba")] * 2 + [_meta("warm synth pad")] * 2                    # a tie goes alphabetically
    assert "marimba" in build.example_description(tie)
    assert build.example_description([]) is None
    assert build.example_description([{"description": "old sidecar"}]) is None     # no metadata: no example


def _sidecar(folder, name, meta):
    wav = folder / f"{name}.wav"
    (folder / f"{name}.json").write_text(json.dumps({**meta, "description": describe(meta, 0)}))
    return wav


def test_training_metas_from_a_manifest_or_the_lm_workdir(tmp_path):
    clips = tmp_path / "corpus"
    clips.mkdir()
    wavs = [_sidecar(clips, f"c{i}", _meta("oboe" if i else "flute")) for i in range(3)]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(w), "info_path": str(w.with_suffix(".json"))}) + "\n"
                                for w in wavs))
    assert [m["instrument"] for m in build.training_metas(manifest)] == ["flute", "oboe", "oboe"]
    # an LM workdir: its config's data_dir, whose tokenize report (train split) lists the clips it trained on
    ds = tmp_path / "tokens" / "bundled" / "1.1.0"
    ds.mkdir(parents=True)
    (ds / "dataset_info.json").write_text("{}")
    (ds / "tokenize_report_train.json").write_text(json.dumps({"kept": [{"path": str(w)} for w in wavs[1:]]}))
    work = tmp_path / "lm_train"
    (work / "export").mkdir(parents=True)
    (work / "config.json").write_text(json.dumps({"data_dir": str(tmp_path / "tokens")}))
    for lm in (work, work / "export"):
        assert [m["instrument"] for m in build.training_metas(lm=lm)] == ["oboe", "oboe"]
    assert build.training_metas(lm=tmp_path / "corpus") == []                       # no workdir: nothing
    # a train split joined from several tokenizer outputs (merge_splits): every report, in order
    for i in range(2, 12):
        (ds / f"tokenize_report_train_{i - 1}.json").write_text(json.dumps({"kept": [{"path": str(wavs[i % 3])}]}))
    want = ["oboe", "oboe"] + [_meta("oboe" if i % 3 else "flute")["instrument"] for i in range(2, 12)]
    assert [m["instrument"] for m in build.training_metas(lm=work)] == want


def test_bundled_folder_example_and_its_fallback(tmp_path):
    (tmp_path / package.INFO).write_text(json.dumps({"name": "bundled", package.EXAMPLE_KEY: "oboe jig, 120 bpm"}))
    assert package.example_description(tmp_path) == "oboe jig, 120 bpm"
    (tmp_path / package.INFO).write_text(json.dumps({"name": "bundled"}))             # an older bundled.json
    assert package.example_description(tmp_path) == package.FALLBACK_EXAMPLE
    assert package.example_description(tmp_path / "missing") == package.FALLBACK_EXAMPLE
    assert training_meta_of(package.FALLBACK_EXAMPLE) is not None                   # the corpus' wording too


def test_the_shipped_bundled_model_has_its_own_training_style_example():
    text = package.example_description(package.WEIGHTS_DIR)
    info = json.loads((package.WEIGHTS_DIR / package.INFO).read_text())
    assert info[package.EXAMPLE_KEY] == text and text != EXAMPLE_DESCRIPTION and "80s" not in text
    meta = training_meta_of(text)
    assert meta is not None, f"{text!r} is not a description of the bundled corpus' template"
    assert NAMES[meta["instrument"]] in FAMILIES


def test_the_shipped_bundled_model_records_the_presets_decoding_defaults():
    """The shipped folder decodes as from_config("bundled") does; a folder without the key gets the music defaults."""
    from magnet_jax import presets
    assert package.generation_overrides(package.WEIGHTS_DIR) == presets.BUNDLED_GENERATION
    assert presets.get("bundled").generation.max_cfg_coef == presets.BUNDLED_GENERATION["max_cfg_coef"] != 10.0
    assert presets.get("magnet_small_10secs").generation.max_cfg_coef == 10.0          # released: audiocraft's
    assert package.generation_overrides(ROOT / "missing") == {}


def test_the_shipped_bundled_lm_has_the_presets_architecture():
    """from_config("bundled") / configs/magnet.py:bundled build the shipped LM's architecture (rotary positions
    included), so training from scratch with the recipe makes weights of the shipped folder's shape."""
    from magnet_jax import presets
    shipped = json.loads((package.WEIGHTS_DIR / "lm" / package.LM_FILES[1]).read_text())["model"]
    preset = presets.get("bundled").model.to_dict()
    assert {k: shipped[k] for k in preset if k in shipped} == {k: preset[k] for k in preset if k in shipped}
    assert shipped["positional_embedding"] == preset["positional_embedding"] == "rope"


def test_released_models_keep_the_80s_example():
    assert TextToAudioPipeline.example_description == EXAMPLE_DESCRIPTION
    assert EXAMPLE_DESCRIPTION == "80s electronic track with melodic synthesizers and a driving beat"


def test_run_sh_passes_no_fixed_text():
    """The main job's text is the loaded model's example (tools/generate.py), never one the script appends."""
    code = [line for line in (ROOT / "tools/run.sh").read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "--text" in line or "80s" in line], code
    assert any('"$@"' in line for line in code)                                       # the user's flags, as given
