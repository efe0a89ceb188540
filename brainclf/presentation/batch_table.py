"""A row of the Predict page's batch table: one analysed slice of an upload, narrow enough for a laptop window."""

from __future__ import annotations

from .. import DISPLAY_NAMES
from .wording import ReferRule, pct, result_status, summary_row


def batch_row(case_ref: str, file: str, rule: ReferRule, probabilities: dict[str, float], predicted: str,
              out_of_distribution: bool = False) -> dict[str, str]:
    """One row of the Predict page's batch table, narrow enough for an 800 px window (wording.summary_row's nine
    columns scrolled sideways there): the case, its file when names are shown, the answer with its status in
    one cell, and every class's probability in one cell, most likely first ('—' for a flagged slice)."""
    row = summary_row(case_ref, file, rule, probabilities, predicted, out_of_distribution)
    kind = result_status(rule, probabilities, out_of_distribution).kind
    answer = {"ood": f"{row['Status']} {row['Answer']}", "refer": row["Answer"]}.get(
        kind, f"{row['Answer']}, {row['Confidence']} · {row['Status']}")
    ranked = sorted(probabilities.items(), key=lambda cp: -cp[1])
    # No break inside "No tumour 0.2 %": the cell wraps between classes only.
    probs = " · ".join(f"{DISPLAY_NAMES.get(c, c)} {pct(p)}".replace(" ", "\u00a0") for c, p in ranked)
    return {"Case": case_ref, **({"File": file} if file else {}), "Answer": answer,
            "Probabilities": "—" if kind == "ood" else probs}
