"""What a clinician reads next to a result: the refer rule in plain words, the out-of-distribution flag, the
Grad-CAM caveat and whether a model is fit for reading scans at all.

The Predict page and the PDF case report (brainclf.presentation.report) both take their sentences from here, so the
screen and the paper never disagree. No Streamlit here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import CLASS_NAMES, DISPLAY_NAMES
from ..scoring.operating_point import curve_at, refers_all, with_fallback_bar

INTENDED_USE = "Research tool, not a medical device; not for diagnosis."
REFER_HEADLINE = "Refer to a radiologist"  # the refer status, in these words wherever it is shown
# Every status's headline (result_status), for tables that show only the status.
HEADLINES = {"ood": "Not like a brain MRI slice", "refer": REFER_HEADLINE, "accept": "Not referred"}
REFER_MEANS = "a radiologist should read this slice; the model's answer is not reliable enough to act on"
# Study/baseline models: kept for comparison, never for reading scans.
STUDY_ARCHITECTURES = ("seed",)
MIN_READING_ACCURACY = 0.90  # below this test accuracy a model is a study model whatever its architecture
SHOWN_CONFIDENCE = 0.95  # beside an accuracy seen on validation, its lower bound: 24 of 24 right promises 88 %


@dataclass(frozen=True)
class ReferRule:
    """The refer rule of one model (with or without flip TTA), as its card states it."""

    thresholds: dict[str, float]  # predicted class → lowest accepted confidence
    fitted: bool  # False: the card has no threshold and the fixed fallback applies
    per_class: bool  # the card has per-class thresholds (the strict "no tumour" rule)
    fitted_on: str = "validation split"
    target_accuracy: float | None = None
    curves: dict | None = None  # the card's per-source risk–coverage curves on validation (operating point)

    def threshold(self, cls: str) -> float:
        return self.thresholds[cls]

    def referred(self, probabilities: dict[str, float]) -> bool:
        cls = max(probabilities, key=probabilities.get)
        finite = all(p == p and abs(p) != float("inf") for p in probabilities.values())
        return not (probabilities[cls] >= self.thresholds[cls] and finite)  # fails closed on any NaN

    @property
    def base(self) -> float:
        """The threshold of the tumour classes (the symmetric part of the rule)."""
        return min(self.thresholds[c] for c in CLASS_NAMES if c != "notumor")

    @property
    def strict_notumor(self) -> bool:
        return self.per_class and self.thresholds["notumor"] > self.base


def predictor_rule(predictor) -> ReferRule:
    """The rule a Predictor answers by (its thresholds, card, flip TTA and the server's target), as the Predict
    and Evaluation pages both state and apply it: one rule, so the two pages never disagree."""
    return refer_rule(predictor.refer_thresholds, predictor.card.calibration, tta=predictor.tta,
                      target=predictor.refer_target_accuracy)


def calibrated(card, tta: bool) -> bool:
    """Whether the probabilities a model shows are temperature-scaled: its card has a temperature for the mode it
    runs in (with or without flip TTA); without one they are the network's raw softmax."""
    return card is None or bool(card.calibration.get("temperature_tta" if tta else "temperature"))


UNCALIBRATED = ("Probabilities not calibrated: the model's card has no temperature for this mode, so these are the "
                "network's raw outputs, often over-confident.")


def refer_rule(thresholds: dict[str, float], calibration: dict | None,
               fallback: float | None = None, tta: bool = False, target: float | None = None) -> ReferRule:
    """The rule from a Predictor's `refer_thresholds` and its card's calibration block (`target`: the server's
    refer target, where it overrides the card's)."""
    cal = calibration or {}
    table = with_fallback_bar(thresholds, fallback)
    fitted = any(float(t) > 0 for t in thresholds.values())
    per_class = fitted and bool(cal.get("refer_thresholds_tta" if tta else "refer_thresholds"))
    target = target or cal.get("refer_target_accuracy")
    block = cal.get("operating_tta" if tta else "operating") or {}
    return ReferRule(thresholds=table, fitted=fitted, per_class=per_class,
                     fitted_on=str(cal.get("fitted_on") or "validation split"),
                     target_accuracy=float(target) if target else None, curves=block.get("curves") or None)


def class_label(name: str) -> str:
    """'notumor' → 'No tumour': a class as people read it (unknown names unchanged)."""
    return DISPLAY_NAMES.get(name, name)


def pct(x: float | None, digits: int = 1) -> str:
    """THE percentage formatter of everything a person reads: 0.9312 → '93.1 %'; never rounds a value below 1 up
    to '100 %'; None or NaN (not measured) → '—'. More decimals only where two figures must be told apart
    (pct_pair)."""
    if x is None or x != x:
        return "—"
    d = digits
    while d < 6 and x < 1 and round(100 * x, d) >= 100:
        d += 1
    return f"{100 * x:.{d}f} %"


def count(n: int | None) -> str:
    """THE count formatter: 538108 → '538,108'; None (not recorded) → '—'."""
    return "—" if n is None else f"{int(n):,}"


def points(d: float) -> str:
    """A difference of two shares in percentage points: 0.0123 → '+1.2 points', −0.004 → '−0.4 points'."""
    return pct(abs(d)).replace(" %", " points").join(("−" if d < 0 else "+", ""))


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """"1 image", "2 images", "1,025 images": a count with its noun in the right number."""
    return f"{count(n)} {noun if n == 1 else plural_form or noun + 's'}"


def cell_pct(x: float | None, digits: int = 1) -> str:
    """pct with a no-break space ('93.1\u00a0%'): a narrow table cell or a sentence never breaks '%' onto its own
    line."""
    return pct(x, digits).replace(" ", "\u00a0")


def pct_pair(a: float, b: float, digits: int = 1) -> tuple[str, str]:
    """Two percentages with as many decimals as it takes to tell them apart (at most 5)."""
    d = digits
    while d < 5 and a != b and round(100 * a, d) == round(100 * b, d):
        d += 1
    return pct(a, d), pct(b, d)


def measured_at(rule: ReferRule, threshold: float) -> dict | None:
    """What the card's validation curves measured at a bar, all sources together: {"n", "answered", "correct",
    "accuracy"} (accuracy None when nothing was answered); None for a card without curves."""
    if not rule.fitted or not rule.curves:
        return None
    points = [curve_at(c, threshold) for c in rule.curves.values()]
    n, answered, correct = (sum(p[k] for p in points) for k in ("n", "answered", "correct"))
    return {"n": n, "answered": answered, "correct": correct, "accuracy": correct / answered if answered else None}


def _evidence(rule: ReferRule, threshold: float) -> str:
    """What is known of a bar, measured where the card has it, else the aim (never the aim as if reached)."""
    at = measured_at(rule, threshold)
    if at is None:
        aim = f" aiming at {pct(rule.target_accuracy)} right" if rule.target_accuracy else ""
        return f"fitted on the {rule.fitted_on}{aim} (what it reached is not recorded)"
    if not at["answered"]:  # REFER_ALL's bar, above 1, is one no confidence reaches
        return "no confidence on validation reached the target: every answer is referred" if refers_all(threshold) \
            else f"no slice of {plural(at['n'], 'validation slice')} reached it"
    return (f"on {plural(at['n'], 'validation slice')}, the {count(at['answered'])} answered at or above it were "
            f"{pct(at['accuracy'])} right")


def _answer(rule: ReferRule, probabilities: dict[str, float]) -> tuple[str, str, str, str]:
    """(predicted class, its confidence and its bar told apart as percentages, the class as people read it)."""
    cls = max(probabilities, key=probabilities.get)
    c, t = pct_pair(probabilities[cls], rule.thresholds[cls])
    return cls, c, t, DISPLAY_NAMES.get(cls, cls)


def refer_line(rule: ReferRule, probabilities: dict[str, float]) -> str:
    """The refer status in one short line: this answer's confidence, the bar it missed, what that bar measured."""
    cls, c, t, name = _answer(rule, probabilities)
    if not rule.fitted:
        return f"Refer: confidence {c} in {name} is below a fixed {t} default that was never validated."
    bar = f"the stricter {t} bar for No tumour" if cls == "notumor" and rule.strict_notumor else f"the {t} bar"
    sep = "; " if measured_at(rule, rule.thresholds[cls]) else ", "
    return f"Refer: confidence {c} in {name} is below {bar}{sep}{_evidence(rule, rule.thresholds[cls])}."


def refer_sentence(rule: ReferRule, probabilities: dict[str, float]) -> str:
    """Why refer, in full (one click away from refer_line): what refer means, the bar, where it comes from."""
    cls, c, t, name = _answer(rule, probabilities)
    thr = rule.thresholds[cls]
    if not rule.fitted:
        return (f"Refer: {REFER_MEANS}, because its confidence in {name} ({c}) is below {t}, a fixed default "
                "that was not validated (this model's card has no refer threshold fitted on validation data).")
    fit = f"fitted on the {rule.fitted_on}" + (f" to aim at {pct(rule.target_accuracy)} right answers"
                                                if rule.target_accuracy else "")
    at = measured_at(rule, thr)
    measured = (f"; measured there, {_evidence(rule, thr)}" if at else
                "; what it reached there is not recorded in this card")
    if cls == "notumor" and rule.strict_notumor:
        return (f"Refer: {REFER_MEANS}, because its confidence in No tumour ({c}) is below the {t} this model "
                f"needs for a \"no tumour\" answer, a stricter bar than the {pct_pair(rule.base, thr)[0]} for the "
                f"tumour classes ({fit}{measured}), set so that no validation tumour was answered \"no tumour\" "
                "without referral, since missing a tumour is the costly error.")
    extra = (" and no validation tumour was answered \"no tumour\" without referral"
             if cls == "notumor" and rule.per_class else "")
    return (f"Refer: {REFER_MEANS}, because its confidence in {name} ({c}) is below the {t} this model needs "
            f"for a {name} answer, a threshold {fit}{measured}{extra}.")


def accept_sentence(rule: ReferRule, probabilities: dict[str, float]) -> str:
    """Why an answer was not referred, in one sentence (still not a diagnosis)."""
    cls, c, t, name = _answer(rule, probabilities)
    if not rule.fitted:
        return (f"Not referred: confidence {c} is at or above a fixed {t} default that was not validated "
                "(this model's card has no threshold fitted on validation data).")
    return (f"Not referred: confidence {c} is at or above the {t} this model needs for a {name} answer "
            f"({_evidence(rule, rule.thresholds[cls])}); still not a diagnosis.")


def leaning(cls: str, confidence: float) -> str:
    """A referred answer's class, as a leaning rather than a verdict: 'model leans Glioma, 64.0 %'."""
    return f"model leans {DISPLAY_NAMES.get(cls, cls)}, {pct(confidence)}"


def ood_sentence(reason: str) -> str:
    return (f"Why flagged: {reason}. The class probabilities are not meaningful for this input; check what was "
            "uploaded.")


@dataclass(frozen=True)
class Status:
    """How a result is headed: 'ood' (flag first), 'refer' or 'accept', with its one-line explanation and, for a
    referral, the longer one (`detail`, one click away on the page)."""

    kind: str
    headline: str
    sentence: str
    detail: str = ""


def result_status(rule: ReferRule, probabilities: dict[str, float], out_of_distribution: bool = False,
                  ood_reason: str = "") -> Status:
    if out_of_distribution:
        return Status("ood", HEADLINES["ood"], ood_sentence(ood_reason or "flagged by the OOD guard"))
    if rule.referred(probabilities):
        return Status("refer", REFER_HEADLINE, refer_line(rule, probabilities),
                      refer_sentence(rule, probabilities))
    return Status("accept", HEADLINES["accept"], accept_sentence(rule, probabilities))


def gradcam_caveat(cls: str | None, faithfulness: dict | None = None) -> str:
    """What a Grad-CAM map is and is not, with the card's faithfulness figures when it has them (`cls` None:
    said once for every map on a page)."""
    name = DISPLAY_NAMES.get(cls, cls) if cls else "the class shown"
    text = (f"The map shows where the network's evidence for {name} lies in the slice; it is not an outline "
            "of a lesion, and it often lights up the orbits or the frontal lobe even when the answer is right.")
    d = (faithfulness or {}).get("deletion")
    share = d.get("share_gradcam_lower") if d else None
    if d and d.get("n") and share is not None:
        text += (f" Faithfulness for this model, on {plural(d['n'], 'test image')}: deleting the pixels a "
                 f"predicted-class map marks lowered that class's probability faster than deleting random pixels "
                 f"for {pct(share, 0)} of them (Evaluation page, \"When to trust a prediction\").")
    else:
        text += " This model's card has no faithfulness figures (see the Evaluation page)."
    return text


def is_study_model(architecture: str, test_accuracy: float | None) -> bool:
    """Study/baseline models (the seed CNN, or anything under 90 % test accuracy) are not for reading scans."""
    return architecture in STUDY_ARCHITECTURES or (test_accuracy is not None and test_accuracy < MIN_READING_ACCURACY)


def study_note(test_accuracy: float | None) -> str:
    acc = f" ({pct(test_accuracy, 0)} accurate on the test set)" if test_accuracy is not None else ""
    return f"study/baseline model{acc}: not for reading scans"


def summary_row(case_ref: str, file: str, rule: ReferRule, probabilities: dict[str, float], predicted: str,
                out_of_distribution: bool = False) -> dict[str, str]:
    """One row of the Predict page's batch table, in words: the answer, its status, every class's probability.

    The CSV download keeps machine-readable columns (Prediction.as_row); this is what a reader scans."""
    status = result_status(rule, probabilities, out_of_distribution)
    flagged = status.kind == "ood"
    return {"Case": case_ref, "File": file, "Answer": answer_words(status.kind, predicted, probabilities[predicted]),
            "Status": status.headline, "Confidence": "—" if flagged else pct(probabilities[predicted]),
            **{DISPLAY_NAMES.get(c, c): "—" if flagged else pct(p) for c, p in probabilities.items()}}


def answer_words(kind: str, predicted: str, confidence: float) -> str:
    """A result's answer in a table, by its status kind: the class when answered; a referral leads with the refer
    ('Refer (model leans Glioma, 64.0 %)'); a flagged slice is not assessed: no class (a photo or a CT read
    "(No tumour)" beside its flag, and a table cut at 800 px showed only that)."""
    answer = DISPLAY_NAMES.get(predicted, predicted)
    return {"ood": "not assessed", "refer": f"Refer ({leaning(predicted, confidence)})"}.get(kind, answer)


def probability_lines(probabilities: dict[str, float]) -> list[tuple[float, str]]:
    """(bar length, "Glioma: **77.0 %**") per class, most likely first: the Predict card's bars in words. An output
    that is not a number (a broken model: flagged) reads '—' on an empty bar; a progress bar refuses NaN."""
    ranked = sorted(probabilities.items(), key=lambda cp: -cp[1] if cp[1] == cp[1] else 1.0)
    return [(p if 0.0 <= p <= 1.0 else 0.0, f"{DISPLAY_NAMES.get(c, c)}: **{pct(p)}**") for c, p in ranked]
