"""Predict: upload slices, read calibrated probabilities and the refer rule, see Grad-CAM, download case reports.

Uploads stay in memory: this session's case book (by content hash) keeps them and their results while the
user moves between pages; nothing is written to disk."""

import pandas as pd
import streamlit as st

from brainclf.errors import BrainclfError, ModelError
from brainclf.escaping import CSV_QUOTING, csv_row, md_literal
from brainclf.input import MAX_UPLOAD_FILE_MB
from brainclf.input.limits import size_text
from brainclf.model import short_hash
from brainclf.presentation import (
    batch_row,
    case_report_pdf,
    case_scope_line,
    gradcam_caveat,
    guard_words,
    is_study_card,
    model_label,
    operating_summary,
    plural,
    predictor_rule,
    report_case,
    result_status,
    slice_result,
    study_note,
    study_summary,
    study_summary_text,
    unreferred_miss_advice,
    unreferred_miss_warning,
    validated_scope,
    widget_key,
)
from brainclf.serving import append_audit, audit_record
from pages.case_view import CaseView, compare, headline, model_output
from pages.common import (
    audit_path,
    auth_configured,
    case_book,
    get_predictor,
    model_ready,
    public,
    require,
    route_through_app,
    test_accuracy,
)
from pages.predict_uploads import cases_of_uploads, repeated_uploads, upload_problem, uploads_changed

route_through_app()
who = require("open_predict")
st.title("Predict")
st.caption("Research and education only — not for diagnosis.")
predictor = get_predictor(wait=False)  # on a fresh server the model is still loading: lay out first
if predictor is None:
    st.stop()
card = predictor.card
# every per-image widget key and stored result carries it: name, version, file hash, TTA
model = model_label(card.name, card.version, predictor.tta, short_hash(card.file_sha256))
rule = predictor_rule(predictor)
if is_study_card(card):
    st.error(f"The active model **{md_literal(card.name)}** is a {study_note(test_accuracy(card))}. Choose another "
             "model in the sidebar to read scans.", icon=":material/science:")
elif misses := unreferred_miss_warning(card):
    st.warning(f"The active model **{md_literal(card.name)}** {md_literal(misses)}. {unreferred_miss_advice(card)}",
               icon=":material/report:")
scope = validated_scope(card)
st.caption(f"**Validated scope of {md_literal(card.name)}.** {md_literal(scope['sentence'])} {guard_words(card)}")
operating = operating_summary(card.calibration, predictor.tta, predictor.refer_thresholds,
                              predictor.refer_target_accuracy, predictor.refer_confidence)
if operating:
    st.caption(md_literal(operating))
book = case_book()
# File names may hold a patient's name: cases are headed by their id; names are shown only on request (off by
# default on a sign-in server), and the CSV follows (the PDF never has them).
show_names = st.sidebar.toggle("Show file names", value=not auth_configured(), key="show_names",
                               help="Beside each case's id: in tooltips, tables, messages and the CSV.")
view = CaseView(predictor, book, model, md_literal(case_scope_line(card, predictor.tta)), show_names)
CAVEAT_SAID: list[bool] = []  # the Grad-CAM caveat, once above the cases (gradcam_note)


files = st.file_uploader("Upload MRI slices (JPEG, PNG or DICOM)", type=["jpg", "jpeg", "png", "dcm", "dicom"],
                         accept_multiple_files=True, key="uploads", on_change=uploads_changed,
                         max_upload_size=MAX_UPLOAD_FILE_MB,
                         help="Files are processed in memory and never written to disk. They stay in this "
                         "session's history while you move between pages.")
if files and (problem := upload_problem(files)):
    st.error(problem)
    st.stop()
if files:
    # The same image twice is one case (its widgets are keyed by content).
    shown = cases_of_uploads(book, files)
    if any(d not in book for d in shown):
        st.warning(f"This session keeps at most {book.max_cases} studies and {size_text(book.max_upload_bytes)} of "
                   "uploads: showing the latest ones.")
        shown = [d for d in shown if d in book]
    st.session_state["shown_cases"] = shown
    if repeats := repeated_uploads(files):
        which = "; ".join(f"{md_literal(name)} is the same image as {md_literal(earlier)}" for name, earlier in repeats)
        st.info(f"{plural(len(repeats), 'upload')} repeated an earlier one's image byte for byte and "
                f"{'is' if len(repeats) == 1 else 'are'} shown once" + (f": {which}." if show_names else
                                                                       " (file names hidden)."),
                icon=":material/content_copy:")
else:  # back from another page: the upload box starts empty, the session's cases do not
    shown = [d for d in st.session_state.get("shown_cases", []) if d in book]
    if shown:
        st.caption(f"Showing the {plural(len(shown), 'slice')} you analysed before leaving this page; all of this "
                   "session's cases are in the history below.")
    elif not len(book):
        st.info("Upload one or more brain MRI slices to classify them.")


def analyse(digest: str):
    """The case's Prediction under the active model (computed once per session and model), or an error."""
    case = book.get(digest)
    result = book.usable(digest, model)  # None also when its pictures gave way to the session's budget (admitted)
    if result is not None:
        if not isinstance(result, str):  # an admin may have changed the refer rule since: every view reads today's
            result.refer_threshold = rule.threshold(result.predicted)
        return result
    if not model_ready(predictor):
        st.stop()
    try:
        result = case.predict(predictor)
        result.refer_threshold = rule.threshold(result.predicted)  # the fallback bar for cards without one
        if log := audit_path():  # read once: an admin may switch the log off meanwhile
            _audit(log, audit_record(case.data, result, user=who.user_id, case=case.ref, tta=predictor.tta))
    except ModelError as e:  # the model, not the file: nothing is stored, so the next run tries again
        st.error(f"Model {md_literal(card.name)} could not analyse **{md_literal(case.label(show_names))}**: "
                 f"{public(e)}")
        st.stop()
    except BrainclfError as e:
        result = public(e)  # the page puts the file name before it
        if log := audit_path():  # a fixed reason, never the message
            _audit(log, audit_record(case.data, error=e, model=card.name, version=card.version,
                                model_sha256=card.file_sha256, user=who.user_id, case=case.ref, tta=predictor.tta))
    book.store(digest, model, result)
    return result


def admitted(digests: list[str], keep: list[str] = ()) -> list[str]:
    """The cases of `digests` whose results fit this session's memory budget (CaseBook.admit); the rest are said."""
    fit, refused = book.admit(digests, model, predictor.contract, keep)
    if refused:
        st.warning(md_literal(refused), icon=":material/memory:")
    return fit


def _audit(log, record: dict) -> None:
    """One line in the audit log `log`. While auditing is on, no result is shown without its line (fail closed),
    and nothing is stored, so the next run tries again."""
    try:
        append_audit(log, record)
    except OSError:
        st.error("The audit log cannot be written, so no result is shown while auditing is on. Tell an admin: "
                 "the server's audit folder must be a writable folder with free space.")
        st.stop()


def report_for(digests: list[str]):
    """A callable for st.download_button: the PDF is built only when the user asks for it."""
    items = [report_case(book.get(d).results[model], rule, d, book.get(d).analysed[model], predictor.tta, card)
             for d in digests]
    return lambda: case_report_pdf(items)


def gradcam_note() -> None:
    """What a Grad-CAM map is and is not: said once per page (this script runs afresh on every rerun), above the
    first case shown."""
    if CAVEAT_SAID:
        return
    CAVEAT_SAID.append(True)
    st.caption(md_literal(gradcam_caveat(None, card.faithfulness)))
    st.page_link("pages/evaluation.py", label="Faithfulness figures", icon=":material/monitoring:")


def show_case(digest: str, opacity: float) -> None:
    """One case: the status and its answer, then the scan with its Grad-CAM beside the probabilities; for a
    flagged slice, these only on request (they are not meaningful for it)."""
    case, pred = book.get(digest), analyse(digest)
    if isinstance(pred, str):
        st.error(f"**{md_literal(case.label(show_names))}** was not processed: {pred}")  # pred: public()
        return
    status = result_status(rule, pred.probabilities, pred.out_of_distribution, pred.ood_reason)
    gradcam_note()

    def key(kind: str) -> str:
        return widget_key(kind, digest, model)

    with st.container(border=True):
        headline(view, case, pred, status)
        if status.kind == "ood":
            with st.expander("Show the model's output anyway"):
                model_output(view, digest, pred, opacity, key, overlay_on=True)
        else:
            model_output(view, digest, pred, opacity, key, overlay_on=status.kind == "accept")
        tags = " · DICOM: " + " · ".join(f"{k} {v}" for k, v in case.dicom_tags.items()) if case.dicom_tags else ""
        st.caption(md_literal(f"Case {case.ref} · model {pred.model_name} {pred.model_version} ({pred.model_hash})"
                              + (" with flip TTA" if predictor.tta else "") + tags))
        st.download_button("Case report (PDF)", report_for([digest]), file_name=f"brainclf-case-{case.ref}.pdf",
                           mime="application/pdf", key=widget_key("pdf", digest, model), icon=":material/download:",
                           help="One page: the slice as the model saw it, probabilities, Grad-CAM, refer status, "
                           "model and dates. No file name, no DICOM tags.")


def batch_summary(digests: list[str]) -> None:
    """Above the cards: one row per slice in words, the CSV and one PDF of every case report."""
    analysed = [d for d in digests if not isinstance(book.result(d, model), str)]
    failed = [md_literal(book.get(d).label(show_names)) for d in digests if isinstance(book.result(d, model), str)]
    if failed:
        st.warning(f"{len(failed):,} of {len(digests):,} files could not be processed: {', '.join(failed)}")
    if not analysed:
        return
    results = {d: book.result(d, model) for d in analysed}
    st.subheader(f"Results: {plural(len(analysed), 'slice')}")
    # The slices at a glance, small, right under the heading: on a 1280 × 720 window one shows without scrolling.
    firsts = [d for d in analysed if book.get(d).position in (None, 0) and results[d].model_input is not None][:12]
    st.image([results[d].model_input[..., 0] for d in firsts], width=112, clamp=True,
             caption=[md_literal(f"Case {book.get(d).ref}") for d in firsts])
    singles = {d: r for d, r in results.items() if book.get(d).position is None}  # a study has its own summary
    if singles:  # four columns: all of them fit an 800 px window
        st.table(pd.DataFrame([batch_row(book.get(d).ref, md_literal(r.name) if show_names else "", rule,
                                         r.probabilities, r.predicted, r.out_of_distribution)
                               for d, r in singles.items()]).set_index("Case"))
    csv = pd.DataFrame([csv_row({**r.as_row(), "file": r.name if show_names else book.get(d).ref,
                                 "case": book.get(d).ref, "tta": predictor.tta}) for d, r in results.items()])
    c1, c2 = st.columns(2)
    c1.download_button("Download CSV", csv.to_csv(index=False, quoting=CSV_QUOTING).encode(),
                       file_name="brainclf_predictions.csv", mime="text/csv",
                       help="Machine-readable: probabilities as fractions, one column per class.")
    c2.download_button("All case reports (PDF)", report_for(analysed),
                       file_name="brainclf-case-reports.pdf", mime="application/pdf", key="pdf_batch",
                       icon=":material/download:", help=f"One PDF, a page per slice ({plural(len(analysed), 'page')}); "
                       "no file names, no DICOM tags.")


def show_study(frames: list[str], opacity: float) -> None:
    """A multi-frame DICOM or a series of slices: its per-study summary, then one slice at a time (a slider)."""
    cases = [book.get(d) for d in frames]
    summary = study_summary([slice_result(c.position, book.result(c.digest, model), rule) for c in cases])
    st.markdown(f"### Study {md_literal(cases[0].study[:12])}",
                help=md_literal(f"File: {cases[0].name}") if show_names else None)
    st.caption(md_literal(study_summary_text(summary)))
    top = summary.top_tumour.frame + 1 if summary.top_tumour else 1
    n = st.slider("Slice", 1, len(frames), top, key=widget_key("slice", cases[0].study, model),
                  help="Each slice of the study has its own result; the slider starts on the most confident "
                  "tumour slice.")
    show_case(frames[n - 1], opacity)


def show_shown(shown: list[str], opacity: float) -> None:
    """Each upload in order: a single slice as a case, a study's slices behind one slider."""
    studies: dict[str, list[str]] = {}
    for d in shown:
        studies.setdefault(book.get(d).study, []).append(d)
    for frames in studies.values():
        if book.get(frames[0]).position is None:
            show_case(frames[0], opacity)
        else:
            show_study(frames, opacity)


if shown:
    shown = admitted(shown)
    for digest in shown:
        analyse(digest)  # every slice first, so the summary can lead
    batch_summary(shown)
    opacity = st.slider("Grad-CAM opacity", 0.0, 1.0, 0.45, 0.05, key="opacity")
    show_shown(shown, opacity)

# ---- this session's cases ----------------------------------------------------------------------------------
if len(book):
    st.subheader("This session's cases")
    st.caption(f"Kept in this browser session's memory only (the latest {book.max_cases} studies, at most "
               f"{size_text(book.max_upload_bytes)} of uploads); closing the tab forgets them.")
    st.dataframe(pd.DataFrame(map(csv_row, book.history_rows(model, show_names, rule))), hide_index=True)
    choices = [c.digest for c in reversed(book.cases())]
    labels = {c.digest: f"#{c.number} · " + (f"{c.name} · " if show_names else "") + f"case {c.ref}"
              for c in book.cases()}
    opened = st.selectbox("Open a case", [None, *choices], format_func=lambda d: "—" if d is None else labels[d],
                          key="open_case", help="Shows the case again with the active model.")
    if opened is not None and opened in shown:
        st.caption(f"Case #{book.get(opened).number} is shown above.")
    elif opened is not None and admitted([opened], shown):
        show_case(opened, st.session_state.get("opacity", 0.45))
    pair = st.multiselect("Compare two cases side by side", choices, max_selections=2, format_func=labels.get,
                          select_all=False, key="compare_cases",  # never "Select all": exactly two are compared
                          help="Two of this session's cases next to each other, with the active model.")
    pair = admitted(pair, [*shown, *([opened] if opened else [])])
    preds = {d: analyse(d) for d in pair}
    if len(pair) == 2 and not any(isinstance(p, str) for p in preds.values()):  # a failed one has no scan
        gradcam_note()
        compare(view, [(d, book.get(d), p, result_status(rule, p.probabilities, p.out_of_distribution, p.ood_reason),
                        lambda kind, d=d: widget_key(f"{kind}_side", d, model)) for d, p in preds.items()],
                st.session_state.get("opacity", 0.45))  # widgets keyed "_side": the case may be shown above too
    elif len(pair) == 2:
        st.warning("A case that could not be processed has nothing to compare.")
