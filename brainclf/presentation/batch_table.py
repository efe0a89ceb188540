"""A row of the Predict page's tables: one analysed slice of an upload in the batch table, narrow enough for a laptop
window, and one case of the session's history."""

from __future__ import annotations

import hashlib

from .. import DISPLAY_NAMES
from .wording import HEADLINES, ReferRule, answer_words, pct, result_status, summary_row


def batch_row(case_ref: str, file: str, rule: ReferRule, probabilities: dict[str, float], predicted: str,
              out_of_distribution: bool = False) -> dict[str, str]:
    """One row of the Predict page's batch table, narrow enough for an 800 px window (wording.summary_row's nine
    columns scrolled sideways there): the case, its file when names are shown, the answer with its status in
    one cell, and every class's probability in one cell, most likely first ('—' for a flagged slice)."""
    row = summary_row(case_ref, file, rule, probabilities, predicted, out_of_distribution)
    kind = result_status(rule, probabilities, out_of_distribution).kind
    answer = {"ood": f"{row['Status']}: {row['Answer']}", "refer": row["Answer"]}.get(
        kind, f"{row['Answer']}, {row['Confidence']} · {row['Status']}")
    ranked = sorted(probabilities.items(), key=lambda cp: -cp[1])
    # No break inside "No tumour 0.2 %": the cell wraps between classes only.
    probs = " · ".join(f"{DISPLAY_NAMES.get(c, c)} {pct(p)}".replace(" ", "\u00a0") for c, p in ranked)
    return {"Case": case_ref, **({"File": file} if file else {}), "Answer": answer,
            "Probabilities": "—" if kind == "ood" else probs}


def history_row(case, model: str, show_names: bool = True, rule=None) -> dict:
    """A case of the session's history: its result under `model` if any (its status by `rule`, the rule in force, as
    the case view reads it), else its latest; the file column blank when names are hidden."""
    label = model if model in case.results else next(reversed(case.results), None)
    res = case.results.get(label) if label else None
    row = {"#": case.number, "added (UTC)": case.added.strftime("%H:%M:%S"), "case": case.ref,
           "file": case.name if show_names else "", "prediction": "", "confidence": "—",
           "status": "not analysed", "model": label or ""}
    if isinstance(res, str):
        row["status"] = "not processed"
    elif res is not None:
        kind = (result_status(rule, res.probabilities, res.out_of_distribution).kind if rule and label == model
                else "ood" if res.out_of_distribution else "refer" if res.referred else "accept")
        row.update(prediction=answer_words(kind, res.predicted, res.confidence),
                   confidence="—" if kind == "ood" else pct(res.confidence), status=HEADLINES[kind])
    return row


def content_hash(data: bytes) -> str:
    """SHA-256 of the uploaded bytes (hex), a case's identity (brainclf.presentation.cases)."""
    return hashlib.sha256(data).hexdigest()


def repeated_names(uploads: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """(file name, the earlier file of the same bytes) for each upload that repeats another's bytes: the case book
    keeps one case per image, so without a word the second name would be in no table, CSV or PDF."""
    first: dict[str, str] = {}
    repeats = []
    for name, data in uploads:
        digest = content_hash(data)
        if digest in first:
            repeats.append((name, first[digest]))
        else:
            first[digest] = name
    return repeats
