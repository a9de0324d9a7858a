"""Descriptions of rendered clips in the phrasing a user would type, from the clip's metadata.

Wording and field order vary across clips (seeded per clip) so the model does not lock onto one template;
every description names the instrument, and most name the tempo, the key / mode and the style.
"""
from __future__ import annotations

import random

# General MIDI programs used for rendering: program -> (name as a user says it, family).
INSTRUMENTS = {
    0: ("piano", "keyboard"), 4: ("electric piano", "keyboard"), 6: ("harpsichord", "keyboard"),
    19: ("church organ", "organ"), 16: ("organ", "organ"), 21: ("accordion", "organ"),
    24: ("nylon guitar", "guitar"), 25: ("acoustic guitar", "guitar"), 46: ("harp", "guitar"),
    40: ("violin", "strings"), 42: ("cello", "strings"), 48: ("string ensemble", "strings"),
    56: ("trumpet", "brass"), 57: ("trombone", "brass"), 61: ("brass section", "brass"),
    65: ("alto sax", "reed"), 68: ("oboe", "reed"), 71: ("clarinet", "reed"),
    73: ("flute", "pipe"), 74: ("recorder", "pipe"), 75: ("pan flute", "pipe"),
    11: ("vibraphone", "mallet"), 12: ("marimba", "mallet"), 8: ("celesta", "mallet"),
    80: ("square synth lead", "synth"), 81: ("saw synth lead", "synth"), 89: ("warm synth pad", "synth"),
}
FAMILIES = sorted({fam for _, fam in INSTRUMENTS.values()})


def tempo_word(bpm: float) -> str:
    if bpm < 76:
        return "slow"
    return "moderate" if bpm < 112 else "fast"


_TEMPO_SYNONYMS = {"slow": ["slow", "calm", "gentle", "laid-back"], "moderate": ["moderate", "steady", "walking-pace"],
                   "fast": ["fast", "lively", "upbeat", "energetic"]}


def describe(meta: dict, seed: int) -> str:
    """One description of ``meta`` (keys: instrument, genre, era, composer, bpm, key, mode, meter)."""
    rng = random.Random(seed)
    t = rng.choice(_TEMPO_SYNONYMS[tempo_word(meta["bpm"])])
    ins, genre, era = meta["instrument"], meta["genre"], meta["era"]
    key = f"{meta['key']} {meta['mode']}"
    bpm = f"{int(round(meta['bpm']))} bpm"
    composer = meta.get("composer") or ""
    art = "an" if t[0] in "aeiou" else "a"
    by = f" by {composer}" if composer and rng.random() < 0.5 else ""
    templates = [
        f"{art} {t} {era} {genre} on {ins} in {key}, {bpm}",
        f"{ins}, {t} {genre} in {key}",
        f"{era} {genre}{by} played on {ins}, {bpm}, {key}",
        f"{t} {ins} piece in {key}, {meta['meter']} time",
        f"{genre} arranged for {ins}, {t}, {bpm}",
        f"{key} {genre} on {ins}{by}",
        f"{bpm} {t} {ins} {genre}",
        f"solo {ins} playing {art} {t} {era} {genre} in {key}",
    ]
    return rng.choice(templates)
