"""Text adherence: MIR measurements of clips against the metadata their prompt names (key / mode, tempo,
instrument family), and the instrument-family classifier trained on the corpus' training split."""
from __future__ import annotations

import dataclasses

import numpy as np

from magnet_jax.eval.mir import estimate_key, estimate_tempo, mfcc_stats, pitch_class, tempo_close


@dataclasses.dataclass
class FamilyClassifier:
    """Standardised MFCC statistics -> logistic regression (scikit-learn) over instrument families."""
    model: object = None

    def fit(self, features: np.ndarray, families) -> "FamilyClassifier":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        if len(set(families)) < 2:
            raise ValueError("the family classifier needs clips of at least 2 instrument families")
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
        self.model.fit(np.asarray(features), list(families))
        return self

    @property
    def classes(self) -> list[str]:
        return list(self.model.classes_)

    def predict(self, features: np.ndarray) -> list[str]:
        return list(self.model.predict(np.atleast_2d(features)))


def measure(wav: np.ndarray, sr: int) -> dict:
    """The MIR facts of one mono clip: key, mode, tempo and the timbre features."""
    tonic, mode, corr = estimate_key(wav, sr)
    return dict(key=tonic, mode=mode, key_corr=corr, bpm=estimate_tempo(wav, sr), features=mfcc_stats(wav, sr))


def score(measured: list[dict], metas: list[dict], classifier: FamilyClassifier | None) -> dict:
    """Aggregate adherence of ``measured`` clips to their prompts' ``metas`` (key, mode, bpm, instrument_family).

    ``tempo_spearman``: Spearman rank correlation of measured vs prompt bpm (beat trackers' octave errors do not
    break ranks as badly as they break absolute accuracy); ``tempo_acc2``: within 8 % allowing x2 / x1/2."""
    from scipy.stats import spearmanr
    n = len(measured)
    if n == 0 or n != len(metas):
        raise ValueError(f"{n} measured clips for {len(metas)} prompts: give one prompt per clip")
    mode_ok = [m["mode"] == p["mode"] for m, p in zip(measured, metas)]
    key_ok = [ok and pitch_class(m["key"]) == pitch_class(p["key"]) for ok, m, p in zip(mode_ok, measured, metas)]
    est, tgt = np.array([m["bpm"] for m in measured]), np.array([float(p["bpm"]) for p in metas])
    rho = spearmanr(est, tgt).statistic if n > 2 and np.ptp(est) > 0 and np.ptp(tgt) > 0 else float("nan")
    out = dict(n=n, mode_accuracy=float(np.mean(mode_ok)), key_accuracy=float(np.mean(key_ok)),
               tempo_spearman=float(rho), tempo_acc2=float(np.mean([tempo_close(e, t) for e, t in zip(est, tgt)])),
               mode_chance=0.5, key_chance=1 / 24)
    if classifier is not None:
        pred = classifier.predict(np.stack([m["features"] for m in measured]))
        out.update(family_accuracy=float(np.mean([p == q["instrument_family"] for p, q in zip(pred, metas)])),
                   family_chance=1 / len(classifier.classes), family_predictions=pred)
    return out
