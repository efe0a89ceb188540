"""A site run's figures side by side, in the same words for the Model page's table and the go-live PDF."""

from __future__ import annotations

from ..evaluation.analysis import curve_points, misclassified
from ..model.uploads import person_words
from ..presentation.scope import group_interval
from ..presentation.wording import SHOWN_CONFIDENCE, count, measured_at, pct, plural, refer_rule
from ..scoring.operating_point import lower_bound, referred_notumor, risk_coverage, slices_needed
from ..scoring.rates import arrays_from_rows
from ..scoring.trust import coverage_accuracy

# The mode and the target first: a column's figures move with flip TTA (re-chosen on the site's slices by the
# site steps) and with the refer target, not only with what a step did.
ROWS = (("Flip TTA", "tta"), ("Refer target", "target"), ("Accuracy", "accuracy"),
        ("95 % interval (case groups)", "interval"),
        ("Answered (not referred, not flagged)", "coverage"), ("Right among answered", "accepted_accuracy"),
        ("Tumours called 'no tumour', answered", "called_notumor_unflagged_rate"))
FORGETTING_TOLERANCE = 0.005  # a Kaggle `Testing` drop above half a point is said in words (issue #24's bar)
STAGES = (("validate", "As it came"), ("calibrate", "Site calibration"), ("adapt", "Adapted"))


def cell(report: dict | None, key: str) -> str:
    if not report:
        return "-"
    if key == "tta":
        return "on" if report.get("tta") else "off"
    if key == "target":  # the starting model's own rule as it came
        return pct(report["target"]) if report.get("target") else "its card's"
    if key == "interval":
        ci = (report.get("intervals") or {}).get("accuracy")
        return f"{pct(ci[0])} - {pct(ci[1])}" if ci else group_interval(report.get("intervals"))
    value = report.get(key)
    return "-" if value is None else pct(value)


def columns(state: dict) -> list[tuple[str, dict]]:
    """(heading, held-out report) per finished step, in the order the steps run."""
    out = []
    for step, heading in STAGES:
        done = state["steps"].get(step)
        if done:
            out.append((heading, done if step == "validate" else {**done["heldout"], "target": done.get("target")}))
    return out


def saved_models(state: dict) -> list[str]:
    """Which model each finished step saved, in words: the column's heading, its name, version and file hash, and
    who ran the step where the app recorded them."""
    out = []
    for step, heading in STAGES[1:]:
        if done := state["steps"].get(step):
            ident = f", version {done['version']}, file SHA-256 {done['sha256'][:12]}" if done.get("sha256") else ""
            by = f", by {person_words(done['by'])}" if person_words(done.get("by")) else ""
            out.append(f"{heading}: saved as {done.get('name') or '?'}{ident}{by}.")
    return out


def comparison_rows(state: dict) -> list[dict]:
    """One row per figure, one column per finished step (brainclf.site.run's state)."""
    cols = columns(state)
    return [{"Held-out part": label, **{heading: cell(report, key) for heading, report in cols}}
            for label, key in ROWS]


def heldout_curves(state: dict) -> list[dict]:
    """The held-out part's risk–coverage curve after each finished step, with the point its refer rule puts it
    at (brainclf.presentation.figures.risk_coverage_figure's input)."""
    out = []
    for heading, report in columns(state):
        rows = report.get("predictions") or []
        if rows:
            y, p = arrays_from_rows(rows)
            bars = report.get("refer_thresholds")
            point = coverage_accuracy(y, p, bars) if bars else None
            strict = bars["notumor"] if bars and bars["notumor"] > min(bars.values()) else 0.0  # its own bar
            out.append({"label": heading, "data": heading, "n": len(y), "held_out": True, "point": point,
                        **curve_points(risk_coverage(y, p, referred_notumor(p, strict)))})
    return out


def misclassified_table(report: dict) -> list[dict]:
    """The held-out slices the model got wrong (brainclf.evaluation.misclassified: most confident first) as table
    rows: file, true and predicted class, confidence, status."""
    return [{"file": r["path"], "true": r["true"], "predicted": r["pred"], "confidence": max(r["probs"]),
             "referred or flagged": bool(r.get("referred") or r.get("ood")), "sequence": r.get("sequence", "")}
            for r in misclassified(report.get("predictions", []))]


def promise(step: dict | None) -> str | None:
    """What a calibrate or adapt step's refer rule can promise, in words: on the slices it was fitted on, how many
    were answered and right, the lower bound of that accuracy, and how many answered slices, all right, the
    target needs at that confidence. None for a step without a fitted rule."""
    cal = (step or {}).get("calibration") or {}
    tta = bool(cal.get("tta_default"))
    thresholds = cal.get("refer_thresholds_tta" if tta else "refer_thresholds")
    rule = refer_rule(thresholds, cal, tta=tta) if thresholds else None
    at = measured_at(rule, rule.base) if rule else None
    if at is None:
        return None
    confidence, target = cal.get("refer_confidence") or SHOWN_CONFIDENCE, cal["refer_target_accuracy"]
    n, answered, correct = at["n"], at["answered"], at["correct"]
    bound = lower_bound(correct, answered, confidence)
    seen = (f"{count(answered)} of {plural(n, 'slice')} answered, {pct(correct / answered)} right; with "
            f"{pct(confidence, 0)} confidence at least {pct(bound)}") if answered else \
        f"none of its {plural(n, 'slice')} answered"
    rule = " (the rule asked that bound to reach the target)" if cal.get("refer_confidence") else ""
    verdict = "these slices support it." if answered and bound >= target else \
        "more calibration cases are needed before this target can be promised."
    needed = plural(slices_needed(target, confidence), "answered slice")
    return (f"Refer rule fitted on {cal.get('fitted_on') or 'the site'}: {seen}{rule}. Promising {pct(target, 0)} at "
            f"{pct(confidence, 0)} confidence takes at least {needed}, all right; {verdict}")


def forgetting(adapt: dict | None) -> tuple[str, bool] | None:
    """(the forgetting check in words, whether the drop is beyond FORGETTING_TOLERANCE) of an adapt step, or
    None where Kaggle `Testing` was not checked."""
    k = (adapt or {}).get("kaggle_test") or {}
    before, after = k.get("before"), k.get("after")
    if not (before and after):
        return None
    text = (f"Forgetting check on Kaggle Testing ({plural(after['n'], 'slice')}): {pct(before['accuracy'])} before, "
            f"{pct(after['accuracy'])} after adaptation.")
    drop = before["accuracy"] - after["accuracy"]
    if drop > FORGETTING_TOLERANCE:
        text += (f" {100 * drop:.1f} points lower: the adapted model reads the images it was first trained on "
                 "worse; use it for this site's scans, and the starting model elsewhere.")
    return text, drop > FORGETTING_TOLERANCE
