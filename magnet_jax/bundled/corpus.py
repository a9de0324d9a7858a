"""The bundled model's corpus: scores shipped with ``music21`` rendered to audio with FluidSynth.

Each work is parsed, transposed by a seeded interval, given one General MIDI instrument for every part and a
seeded tempo, written as MIDI and rendered by the ``fluidsynth`` CLI with a GM soundfont (Debian
``fluid-soundfont-gm``), down-mixed to mono at the corpus rate, and trimmed to ``max_seconds`` with a short
fade. Every clip gets an audiocraft manifest line and a ``.json`` sidecar (instrument, family, composer, era,
genre, bpm, key, mode, meter, work, split, description). Whole works are held out for validation by a hash of
the work id, so no work is in both splits. Everything is seeded: the same arguments give the same corpus.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from magnet_jax.bundled.descriptions import INSTRUMENTS, describe

MAX_MEASURES = 32
RENDER_TIMEOUT_S = 60     # a clip renders in ~1 s; a few scores never end (see render): those are skipped
RENDER_MARGIN_S = 30.0    # a render is stopped this far past its score's length (notes' release tails are shorter)
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")

# corpus folder (inside music21's corpus) -> (era, genre, composer, how many works to take at most, bpm range)
SOURCES = {
    "bach": ("baroque", "chorale", "Bach", 200, (56, 96)),
    "palestrina": ("renaissance", "motet", "Palestrina", 100, (56, 88)),
    "monteverdi": ("renaissance", "madrigal", "Monteverdi", 40, (60, 100)),
    "trecento": ("medieval", "ballata", "", 40, (70, 120)),
    "josquin": ("renaissance", "motet", "Josquin", 8, (56, 84)),
    "ryansMammoth": ("folk", "fiddle tune", "", 160, (96, 160)),
    "oneills1850": ("folk", "jig", "", 39, (100, 160)),
    "essenFolksong": ("folk", "folk song", "", 31, (80, 132)),
    "airdsAirs": ("folk", "air", "", 6, (70, 110)),
    "beethoven": ("classical", "string quartet", "Beethoven", 26, (66, 132)),
    "mozart": ("classical", "minuet", "Mozart", 16, (80, 140)),
    "haydn": ("classical", "string quartet", "Haydn", 9, (72, 132)),
    "schumann_robert": ("romantic", "piano piece", "Schumann", 7, (60, 112)),
    "schumann_clara": ("romantic", "piano piece", "Clara Schumann", 5, (60, 112)),
    "joplin": ("ragtime", "rag", "Joplin", 1, (88, 120)),
    "corelli": ("baroque", "trio sonata", "Corelli", 1, (70, 120)),
    "handel": ("baroque", "aria", "Handel", 1, (60, 100)),
}


@dataclass(frozen=True)
class CorpusOptions:
    out_dir: str
    sample_rate: int = 16000
    max_seconds: float = 30.0
    min_seconds: float = 4.0
    renders_per_work: int = 1
    valid_fraction: float = 0.1
    max_works: int = 0             # 0 = every selected work
    seed: int = 0
    render_missing: bool = True    # False: write the manifests of the clips already rendered (a partial corpus)


def find_soundfont() -> str:
    for p in SOUNDFONTS:
        if os.path.exists(p):
            return p
    raise FileNotFoundError("no General MIDI soundfont found: apt-get install fluid-soundfont-gm (and fluidsynth)")


def list_works(seed: int = 0, max_works: int = 0) -> list[tuple[str, str]]:
    """(work id, source folder) pairs, a seeded sample of each folder (ABC opera contribute each tune)."""
    from music21 import corpus
    rng = random.Random(seed)
    by_src: dict[str, list[str]] = {}
    for p in corpus.getCorePaths():
        rel = str(p).split("/corpus/", 1)[1]
        src = rel.split("/", 1)[0]
        if src in SOURCES and p.suffix in (".mxl", ".krn", ".abc", ".xml", ".musicxml"):
            by_src.setdefault(src, []).append(rel)
    works = []
    for src, paths in sorted(by_src.items()):
        paths = sorted(paths)
        rng.shuffle(paths)
        works += [(w, src) for w in paths[:SOURCES[src][3]]]
    rng.shuffle(works)
    return works[:max_works] if max_works else works


def split_of(work: str, valid_fraction: float) -> str:
    h = int(hashlib.sha1(work.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "valid" if h < valid_fraction else "train"


def _score(work: str):
    from music21 import corpus
    s = corpus.parse(work)
    if hasattr(s, "scores"):          # an Opus (ABC / Essen collections): its first tune
        s = s.scores[0] if len(s.scores) else None
    return s


def _prepare(score, program: int, bpm: float, semitones: int):
    """Transposed copy with one instrument for every part and one tempo mark; returns (score, key, mode, meter)."""
    from music21 import instrument, tempo
    if score.parts and len(score.parts[0].getElementsByClass("Measure")) > MAX_MEASURES:
        score = score.measures(1, MAX_MEASURES)   # clips are at most ~30 s: render only the opening
    s = score.transpose(semitones) if semitones else score
    k = s.analyze("key")
    ts = s.recurse().getElementsByClass("TimeSignature")
    meter = ts[0].ratioString if ts else "4/4"
    for el in list(s.recurse().getElementsByClass(("Instrument", "MetronomeMark"))):
        el.activeSite.remove(el)
    parts = list(s.parts) or [s]
    for p in parts:
        ins = instrument.Instrument()
        ins.midiProgram = program
        p.insert(0, ins)
    parts[0].insert(0, tempo.MetronomeMark(number=bpm))
    return s, k.tonic.name.replace("-", "b"), k.mode, meter


class RunawayRender(RuntimeError):
    """fluidsynth kept writing past the clip length (a score whose last notes never end)."""


def render(midi: str, wav_out: str, sample_rate: int, soundfont: str, max_seconds: float | None = None,
           timeout_s: float = RENDER_TIMEOUT_S):
    """``fluidsynth`` renders ``midi`` to ``wav_out``. It renders until the MIDI ends: a few scores never end and
    fast rendering writes gigabytes a minute, so the render is stopped (:class:`RunawayRender`) once the file holds
    more than ``max_seconds`` of audio (counted at 2 channels of 32 bits: an upper bound), or after ``timeout_s``
    (``subprocess.TimeoutExpired``). Where util-linux's ``setpriv`` exists, the renderer dies with this process,
    so a stopped run leaves no renderer writing."""
    cap = None if max_seconds is None else int(max_seconds * sample_rate * 8) + 1024
    args = ["fluidsynth", "-ni", "-q", "-g", "0.7", "-r", str(sample_rate), "-F", wav_out, soundfont, midi]
    # util-linux's setpriv makes Linux kill the renderer when this process dies (PR_SET_PDEATHSIG) without a
    # preexec_fn, which is unsafe in a multithreaded process (JAX)
    guard = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
    proc = subprocess.Popen(guard + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None:
            if cap is not None and os.path.exists(wav_out) and os.path.getsize(wav_out) > cap:
                raise RunawayRender(f"{midi}: fluidsynth wrote more than {max_seconds:g} s of audio; the score "
                                    f"does not end")
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(args, timeout_s)
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, args, stderr=err)


def _finish(wav: np.ndarray, sr: int, max_seconds: float) -> np.ndarray:
    """Mono, leading silence dropped, trimmed to max_seconds with a 0.5 s fade-out, peak-normalised to 0.9."""
    x = wav.mean(axis=1) if wav.ndim == 2 else wav
    loud = np.flatnonzero(np.abs(x) > 1e-3)
    if loud.size == 0:
        return x[:0]
    x = x[loud[0]:loud[-1] + 1]
    n = int(max_seconds * sr)
    if x.size > n:
        x = x[:n].copy()
        f = min(x.size, sr // 2)
        x[-f:] *= np.linspace(1, 0, f)
    return (0.9 * x / max(np.abs(x).max(), 1e-6)).astype(np.float32)


def build_one(work: str, src: str, render_index: int, opts: CorpusOptions, soundfont: str) -> dict | None:
    """Render one clip; returns its manifest line (with the sidecar written), or None if the work is unusable."""
    import soundfile as sf
    era, genre, composer, _, (lo, hi) = SOURCES[src]
    rng = random.Random(f"{opts.seed}:{work}:{render_index}")
    program = rng.choice(sorted(INSTRUMENTS))
    bpm = float(rng.randrange(lo, hi + 1, 2))
    semitones = rng.randint(-5, 6)
    stem = hashlib.sha1(f"{work}:{render_index}".encode()).hexdigest()[:12]
    split = split_of(work, opts.valid_fraction)
    folder = Path(opts.out_dir) / split
    wav_path, meta_path = folder / f"{stem}.wav", folder / f"{stem}.json"
    if wav_path.exists() and meta_path.exists():          # resumable: finished clips are kept
        meta = json.loads(meta_path.read_text())
        return _manifest_line(wav_path, meta, opts.sample_rate)
    if not opts.render_missing:
        return None
    try:
        score = _score(work)
        if score is None:
            return None
        s, key, mode, meter = _prepare(score, program, bpm, semitones)
        with tempfile.TemporaryDirectory() as tmp:
            midi = os.path.join(tmp, "x.mid")
            s.write("midi", fp=midi)
            score_seconds = float(s.highestTime) * 60.0 / bpm          # quarter lengths at the quarter-note mark
            render(midi, os.path.join(tmp, "x.wav"), opts.sample_rate, soundfont, score_seconds + RENDER_MARGIN_S)
            wav, sr = sf.read(os.path.join(tmp, "x.wav"), dtype="float32")
    except Exception:  # noqa: BLE001 - a score music21 cannot parse / transpose is skipped, not fatal
        return None
    x = _finish(wav, sr, opts.max_seconds)
    if x.size < opts.min_seconds * sr:
        return None
    name, family = INSTRUMENTS[program]
    meta = dict(work=work, source=src, split=split, instrument=name, instrument_family=family, program=program,
                composer=composer, era=era, genre=genre, bpm=bpm, key=key, mode=mode, meter=meter,
                transpose=semitones)
    meta["description"] = describe(meta, seed=int(stem, 16))
    folder.mkdir(parents=True, exist_ok=True)
    tmp_wav = wav_path.with_suffix(".tmp.wav")
    sf.write(str(tmp_wav), x, sr, subtype="PCM_16")
    os.replace(tmp_wav, wav_path)
    meta_path.write_text(json.dumps(meta, indent=1))
    return _manifest_line(wav_path, meta, sr)


def _manifest_line(wav_path: Path, meta: dict, sr: int) -> dict:
    import soundfile as sf
    info = sf.info(str(wav_path))
    return dict(path=str(wav_path), duration=info.frames / info.samplerate, sample_rate=sr, amplitude=None,
                weight=None, info_path=str(wav_path.with_suffix(".json")), description=meta["description"],
                split=meta["split"], work=meta["work"])


def build_corpus(opts: CorpusOptions, log=print) -> dict:
    """Renders the corpus into ``opts.out_dir``: train/ and valid/ clips, ``train.jsonl`` / ``valid.jsonl``
    manifests and ``corpus_report.json`` (hours, works and instruments per split). Re-running resumes."""
    if shutil.which("fluidsynth") is None:
        raise FileNotFoundError("the fluidsynth CLI is missing: apt-get install fluidsynth fluid-soundfont-gm")
    soundfont = find_soundfont()
    works = list_works(opts.seed, opts.max_works)
    lines = {"train": [], "valid": []}
    try:
        from tqdm import tqdm
        it = tqdm(works, desc="rendering", unit="work")
    except ImportError:
        it = works
    for work, src in it:
        for r in range(opts.renders_per_work):
            line = build_one(work, src, r, opts, soundfont)
            if line is not None:
                lines[line["split"]].append(line)
    out = Path(opts.out_dir)
    # the scores come from the installed music21's corpus: another version selects other works, so a rebuild
    # elsewhere can tell why its clip counts differ
    import music21
    report = {"sample_rate": opts.sample_rate, "seed": opts.seed, "music21": music21.__version__}
    for split, ls in lines.items():
        with open(out / f"{split}.jsonl", "w") as f:
            for line in ls:
                f.write(json.dumps(line) + "\n")
        metas = [json.loads(Path(line["info_path"]).read_text()) for line in ls]
        report[split] = dict(clips=len(ls), hours=round(sum(line["duration"] for line in ls) / 3600, 3),
                             works=sorted({m["work"] for m in metas}),
                             instruments=sorted({m["instrument"] for m in metas}),
                             families=sorted({m["instrument_family"] for m in metas}))
    (out / "corpus_report.json").write_text(json.dumps(report, indent=1))
    log(f"corpus: {report['train']['clips']} train clips ({report['train']['hours']} h), "
        f"{report['valid']['clips']} valid clips ({report['valid']['hours']} h) in {out}")
    return report
