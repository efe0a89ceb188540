"""Try a temperature that depends on how much a slice looks like each source (tried for issue #23, not shipped).

One temperature fitted on the pooled validation set leaves Kaggle `Testing` under-confident; a temperature per
source is right for Kaggle but a slice's source is unknown at prediction time. Here a logistic regression on the
OOD guard's descriptors (and its Mahalanobis distance) gives q = P(external source | slice), fitted and scored out
of fold on the validation set, and each slice's temperature is exp(a + b q), with a and b minimising validation
NLL (unweighted, or each source weighing half). Printed for validation and, read after, the card's test sets:
Kaggle `Testing` and the external held-out slices in `external_predictions`. Flip TTA as the card's default.

    .venv/bin/python scripts/adaptive_temperature.py models/default_split.keras --data $BRAINCLF_DATA \
        --extra-data ../shared/data/external-radiopaedia
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainclf import CLASS_NAMES  # noqa: E402
from brainclf.data.datasets import Sample  # noqa: E402
from brainclf.evaluation.selection import PRIMARY, validation_samples  # noqa: E402
from brainclf.inference import Predictor  # noqa: E402
from brainclf.inference.batch_predict import predict_samples_and_features  # noqa: E402
from brainclf.inference.ood import mahalanobis_scores  # noqa: E402
from brainclf.scoring.metrics import expected_calibration_error  # noqa: E402
from brainclf.scoring.trust import apply_temperature  # noqa: E402
from brainclf.scoring.trust import image_nll as nll  # noqa: E402


def sets_of(predictor: Predictor, data: Path, extra: Path) -> dict[str, list[Sample]]:
    card = predictor.card
    val = validation_samples(card, {PRIMARY: data, extra.name: extra})
    return {"validation Kaggle": val[PRIMARY], "validation external": val[extra.name],
            "Kaggle Testing": [Sample(data / r["path"], CLASS_NAMES.index(r["true"])) for r in card.test_predictions],
            "external held-out": [Sample(extra / r["path"], CLASS_NAMES.index(r["true"]))
                                  for r in card.external_predictions[extra.name]]}


def scored(predictor: Predictor, samples: list[Sample]) -> dict:
    raw, feats, kept, errors = predict_samples_and_features(predictor, samples)
    if errors:
        raise SystemExit(f"unreadable: {errors[0]}")
    descriptors = np.column_stack([feats, mahalanobis_scores(feats, predictor.card.ood)])
    return {"y": np.array([s.label for s in kept]), "raw": raw, "x": descriptors}


def per_slice_temperature(raw: np.ndarray, t: np.ndarray) -> np.ndarray:
    z = np.log(np.clip(raw, 1e-12, 1.0)) / t[:, None]
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def fit_adaptive(y, raw, q, weights, start_t: float) -> tuple[float, float]:
    from scipy.optimize import minimize

    def loss(ab):
        return float(np.sum(weights * nll(y, per_slice_temperature(raw, np.exp(ab[0] + ab[1] * q)))))
    return tuple(minimize(loss, [np.log(start_t), 0.0], method="Nelder-Mead").x)


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--extra-data", type=Path, required=True)
    args = ap.parse_args()
    predictor = Predictor.load(args.model)
    s = {name: scored(predictor, items) for name, items in sets_of(predictor, args.data, args.extra_data).items()}
    vk, ve = s["validation Kaggle"], s["validation external"]
    x, src = np.vstack([vk["x"], ve["x"]]), np.r_[np.zeros(len(vk["y"])), np.ones(len(ve["y"]))]
    source_model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000, class_weight="balanced"))
    q_val = cross_val_predict(source_model, x, src, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                              method="predict_proba")[:, 1]
    source_model.fit(x, src)
    q = {"validation Kaggle": q_val[:len(vk["y"])], "validation external": q_val[len(vk["y"]):],
         **{k: source_model.predict_proba(s[k]["x"])[:, 1] for k in ("Kaggle Testing", "external held-out")}}
    y, raw = np.r_[vk["y"], ve["y"]], np.vstack([vk["raw"], ve["raw"]])
    pooled = predictor.temperature
    rules = {f"one temperature ({pooled:.2f}, the card's)": lambda k: apply_temperature(s[k]["raw"], pooled)}
    for label, w in (("unweighted", np.full(len(y), 1.0)), ("sources weigh half each", 0.5 / np.r_[
            np.full(len(vk["y"]), len(vk["y"])), np.full(len(ve["y"]), len(ve["y"]))])):
        a, b = fit_adaptive(y, raw, q_val, w, pooled)
        rules[f"exp(a + b q), {label}: T {np.exp(a):.2f} to {np.exp(a + b):.2f}"] = (
            lambda k, a=a, b=b: per_slice_temperature(s[k]["raw"], np.exp(a + b * q[k])))
    for name, probs_of in rules.items():
        print(name)
        for k in s:
            p = probs_of(k)
            print(f"  {k:20s} n={len(s[k]['y']):4d} NLL {nll(s[k]['y'], p).mean():.3f} "
                  f"ECE {expected_calibration_error(s[k]['y'], p):.2%}  (mean q {q[k].mean():.2f})")


if __name__ == "__main__":
    main()
