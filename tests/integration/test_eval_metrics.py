"""Evaluation metrics on synthetic audio whose answer is known (key, tempo, FAD, SI-SNR, classifier)."""
import numpy as np
import pytest

from magnet_jax.eval import adherence, fad, mir, recon

SR = 16000


def tone(freq, seconds, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    env = np.minimum(1.0, 20 * t) * np.exp(-2.0 * t)
    return sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3)) * env


def scale(tonic_midi, steps, seconds=0.4):
    notes = [tonic_midi + s for s in steps]
    notes += notes[::-1] + [tonic_midi, tonic_midi + steps[2], tonic_midi + steps[4]] * 2   # scale + tonic triad
    return np.concatenate([tone(440 * 2 ** ((n - 69) / 12), seconds) for n in notes]).astype(np.float32)


MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11, 12), (0, 2, 3, 5, 7, 8, 10, 12)


@pytest.mark.parametrize("tonic,steps,want", [(60, MAJOR, ("C", "major")), (57, MINOR, ("A", "minor")),
                                               (66, MAJOR, ("F#", "major")), (62, MINOR, ("D", "minor"))])
def test_key_of_a_scale(tonic, steps, want):
    key, mode, corr = mir.estimate_key(scale(tonic, steps), SR)
    assert (key, mode) == want and corr > 0.6


def test_pitch_class_names():
    assert mir.pitch_class("Gb") == mir.pitch_class("F#") == mir.pitch_class("f#") == 6
    assert mir.pitch_class("B-") == mir.pitch_class("Bb") == 10   # music21 spells flats with '-'
    with pytest.raises(ValueError, match="unknown key name"):
        mir.pitch_class("H")


def clicks(bpm, seconds=12.0, sr=SR):
    y = np.zeros(int(seconds * sr), np.float32)
    click = (np.exp(-np.arange(400) / 60) * np.sin(2 * np.pi * 1500 * np.arange(400) / sr)).astype(np.float32)
    for t in np.arange(0, seconds - 0.05, 60.0 / bpm):
        i = int(t * sr)
        y[i:i + 400] += click[:len(y) - i]
    return y


@pytest.mark.parametrize("bpm", [90, 120, 150])
def test_tempo_of_a_click_track(bpm):
    est = mir.estimate_tempo(clicks(bpm), SR)
    assert abs(est - bpm) / bpm < 0.05, est
    assert mir.tempo_close(est, bpm) and mir.tempo_close(2 * est, bpm) and not mir.tempo_close(est * 1.3, bpm)
    assert mir.estimate_tempo(np.zeros(SR, np.float32), SR) == 0.0


def test_frechet_distance_formula_and_fad_grows_with_noise():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    mu, s = fad.gaussian(a)
    assert fad.frechet_distance(mu, s, mu, s) < 1e-6
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert fad.frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4 + 1, abs=1e-9)
    emb = fad.MelEmbedding(sample_rate=SR)
    clips = [scale(60 + i, MAJOR, 0.25) for i in range(4)]
    assert fad.frechet_audio_distance(emb, clips, clips) < 1e-6
    noisy = [[c + lvl * rng.standard_normal(len(c)).astype(np.float32) for c in clips] for lvl in (0.01, 0.1, 0.5)]
    scores = [fad.frechet_audio_distance(emb, clips, n) for n in noisy]
    assert 0 < scores[0] < scores[1] < scores[2], scores
    with pytest.raises(ValueError, match="at least 2"):
        fad.gaussian(np.zeros((1, 3)))


def test_function_embedding_adapter():
    emb = fad.FunctionEmbedding(lambda w: np.stack([w[::100], w[1::100]], 1), SR, "toy")
    x = np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    assert emb(x).shape == (160, 2) and fad.frechet_audio_distance(emb, [x], [x]) < 1e-9


def test_reconstruction_metrics():
    x = scale(60, MAJOR, 0.3)
    noise = np.random.default_rng(2).standard_normal(len(x)).astype(np.float32)
    same = recon.reconstruction_metrics(x, x, SR)
    assert same["si_snr"] > 80 and same["mel_distance"] < 1e-6 and same["chroma_similarity"] > 0.999
    assert recon.si_snr(x, 0.5 * x) > 80                                      # scale-invariant
    p = float(np.mean(x ** 2))
    assert recon.si_snr(x, x + np.sqrt(p / 10) * noise) == pytest.approx(10, abs=0.5)   # 10 dB SNR
    noisy = recon.reconstruction_metrics(x, x + 0.3 * noise, SR)
    other = recon.chroma_similarity(x, scale(66, MAJOR, 0.3), SR)
    assert noisy["mel_distance"] > 0.1 and other < same["chroma_similarity"] - 0.2
    # onset envelopes: the same notes on the same beats correlate; the same notes shifted by half a note do not
    assert same["onset_correlation"] > 0.999
    shifted = np.roll(x, len(x) // 16)
    assert recon.onset_correlation(x, shifted, SR) < 0.5 < recon.onset_correlation(x, x + 0.05 * noise, SR)


def test_family_classifier_and_adherence_score():
    rng = np.random.default_rng(3)

    def clip(family, f0):   # "flute": pure tone; "brass": rich harmonics
        t = np.arange(SR) / SR
        hs = (1,) if family == "flute" else range(1, 12)
        return (sum(np.sin(2 * np.pi * f0 * h * t) / h ** 0.5 for h in hs) + 0.01 * rng.standard_normal(SR))
    fams = ["flute", "brass"] * 8
    feats = np.stack([mir.mfcc_stats(clip(f, 220 * 2 ** (i / 12)).astype(np.float32), SR)
                      for i, f in enumerate(fams)])
    clf = adherence.FamilyClassifier().fit(feats, fams)
    test = [clip(f, 300 + 30 * i) for i, f in enumerate(["flute", "brass", "brass", "flute"])]
    measured = [adherence.measure(w.astype(np.float32), SR) for w in test]
    metas = [dict(instrument_family=f, key="C", mode="major", bpm=b)
             for f, b in zip(["flute", "brass", "brass", "flute"], (60, 90, 120, 150))]
    s = adherence.score(measured, metas, clf)
    assert s["family_accuracy"] == 1.0 and s["family_chance"] == 0.5 and s["n"] == 4
    with pytest.raises(ValueError, match="one prompt per clip"):
        adherence.score(measured, metas[:2], clf)
