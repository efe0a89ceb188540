"""The Model page's site section: a site's own labelled slices validate, calibrate and adapt a model before anyone
relies on it there (brainclf.site). Each step runs as the app's background job (one at a time, like training);
its figures are read back from the site run's state, so they survive a reload and are the same for everyone who
opens the same run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from brainclf.errors import BrainclfError
from brainclf.escaping import csv_row, md_literal
from brainclf.inference import overlay_heatmap
from brainclf.model import maker_record
from brainclf.presentation import class_label, confusion_matrix_figure, count, pct, plural, risk_coverage_figure
from brainclf.scoring import slices_needed
from brainclf.serving import owner_run_dir
from brainclf.site import (
    MIN_GROUPS,
    MIN_GROUPS_PER_CLASS,
    MIN_SLICES,
    adaptation_saved,
    check_site_name,
    saved_state,
    site_report_pdf,
    site_run_dir,
    step_job,
)
from brainclf.site.split import PARTS, left_out_words
from brainclf.site.summary import (
    comparison_rows,
    forgetting,
    heldout_curves,
    misclassified_table,
    promise,
    saved_models,
)
from pages.common import (
    available_models,
    get_predictor,
    model_ready,
    public,
    record_model_event,
    redraw_page_when_job_ends,
    require,
    settings,
    training_jobs,
)
from pages.site_runs import kept_runs_section

TARGETS = (0.90, 0.95, 0.98, 0.99)
BOUND_CONFIDENCE = 0.95  # the confidence of the lower bound the site may ask to reach its target
STEPS = ("validate", "calibrate", "adapt")


def _name_follows_folder() -> None:
    st.session_state["site_name"] = str(st.session_state["site_root"])[:48]


def site_section(who) -> None:
    """Pick a site folder, a name and a starting model; run a step; show what the steps measured."""
    config = settings()
    st.header("Your site: validate, calibrate, adapt")
    st.caption(f"Every clinic is another source. Give the model your own labelled slices (a folder of class "
               f"sub-folders, at least {MIN_SLICES} slices from {MIN_GROUPS} cases, {MIN_GROUPS_PER_CLASS} of each "
               "class it holds): they are split by case into "
               "an adaptation part and a held-out part. Validate measures the model on the held-out part; "
               "calibrate fits your site's confidence scale and refer rule; adapt fine-tunes it on your slices while "
               "replaying its own training images. Each saves a new model; nothing is overwritten.")
    roots = config.root_names()
    models = available_models()
    if not roots or not models:
        st.info("This server offers no data folder or no model for a site run ([data] in brainclf.toml).")
        return
    user_base = owner_run_dir(config.runs_dir / "site", who.user_id, "")
    kept_runs_section(who, user_base, training_jobs())
    c1, c2, c3 = st.columns(3)
    root_name = c1.selectbox("Site folder", roots, key="site_root", on_change=_name_follows_folder)
    st.session_state.setdefault("site_name", str(root_name)[:48])
    site = c2.text_input("Site name", max_chars=48, key="site_name",
                         help="Letters, digits, '.', '_' or '-': it names the run and the models it saves.")
    model = c3.selectbox("Starting model", models, format_func=lambda p: p.stem, key="site_model")
    target = st.select_slider("Accepted-accuracy target for the refer rule", TARGETS, value=0.98,
                              format_func=lambda t: pct(t, 0), key="site_target")
    bounded = st.checkbox(f"Promise it with {pct(BOUND_CONFIDENCE, 0)} confidence", key="site_bound",
                          help="The refer rule then answers only where the lower bound of the calibration slices' "
                               "accuracy reaches the target, not only the share seen: fewer answers, a promise the "
                               f"calibration part can support ({pct(target, 0)} needs "
                               f"{slices_needed(target, BOUND_CONFIDENCE)} answered slices, all right).")
    try:
        check_site_name(site)
    except BrainclfError as e:
        st.error(public(e))
        return
    run_dir = site_run_dir(user_base, site, model)
    state = saved_state(run_dir)
    site_root = config.folder(root_name)
    if state and state.get("root", str(site_root.resolve())) != str(site_root.resolve()):
        st.warning(md_literal(f"Site {site} was run on another folder ({state.get('root_name')}) with "
                              f"{model.stem}: give this folder another site name, or delete that run under "
                              "Your site runs above."))
        return
    rule = (target, BOUND_CONFIDENCE if bounded else None)
    _buttons(who, state, run_dir, site_root, site, model, rule, config)
    if state and (state.get("steps") or {}).get("validate"):  # a run whose validate failed has nothing to show
        _results(state, site_root)


def _buttons(who, state, run_dir, site_root, site, model, rule, config) -> None:
    """One button per step; `rule`: (accepted-accuracy target, confidence of its lower bound or None)."""
    jobs = training_jobs()
    done = set((state or {}).get("steps", {}))
    cols = st.columns(len(STEPS))
    default_root = config.default_root()
    for col, step in zip(cols, STEPS):
        needs = "validate" if step != "validate" else None
        disabled = jobs.busy() or (needs is not None and needs not in done)
        if col.button(step.capitalize(), key=f"site_{step}", disabled=disabled, use_container_width=True,
                      type="primary" if step not in done and not disabled else "secondary"):
            work = step_job(step, run_dir, site_root, site, model, rule[0], config.models_dir,
                            default_root.path if default_root else None, confidence=rule[1],
                            runs_root=config.runs_dir, made_by=maker_record(who.label, who.user_id))
            # An adaptation cancelled or interrupted after an epoch resumes from it (brainclf.site.adapt).
            resumable = (lambda: adaptation_saved(run_dir)) if step == "adapt" else (lambda: False)
            try:
                jobs.start_task(f"{site}: {step}", work, owner=who.user_id, owner_label=who.label, run_dir=run_dir,
                                request={"kind": "site", "step": step, "work": work, "resumable": resumable})
                record_model_event("site step started", model)
                st.toast(f"Site step started: {md_literal(step)}")
            except BrainclfError as e:
                st.error(public(e))
    if "validate" not in done:
        st.caption("Validate first: calibrate and adapt use its split.")
    _status(jobs)


@st.fragment(run_every=1.0)
def _status(jobs) -> None:
    # Who, asked again on each redraw (not an argument, which Streamlit replays): a role taken away meanwhile
    # must not keep this panel's buttons.
    who = require("site_workflow")
    s = jobs.status
    redraw_page_when_job_ends(s, "job_panel")  # one key for both panels: one redraw
    if s is not None and s.active and s.request.get("kind") != "site":  # the step buttons are disabled: say why
        st.caption(f"A training is running ({md_literal(s.name)}, started by {md_literal(s.owner_label)}): site "
                   "steps can start once it ends. One job, a training or a site step, runs at a time.")
    if s is None or s.request.get("kind") != "site":
        return
    p = s.progress
    name = md_literal(s.name)
    admin = who.can("cancel_any_training")
    if s.active:
        st.progress(p.fraction_done() if p else 0.0, text=f"{name}: {public(p.text()) if p else 'starting…'}")
        # Keyed by the job's start: a click on a button drawn for a job that has ended since reaches no other job.
        if s.may_cancel(who.user_id, admin) and st.button("Cancel", key=f"site_cancel_{s.started}"):
            try:  # refused once a step saves (an adaptation's final checks included)
                jobs.cancel(who.user_id, admin=admin, started=s.started)
                st.toast("Cancelling after the current batch of slices…")
            except BrainclfError as e:  # a toast: this fragment redraws every second, an st.error would blink away
                st.toast(public(e), icon=":material/block:")
    elif s.resumable() and s.may_cancel(who.user_id, admin) and st.button(f"Resume {name}",
                                                                          key=f"site_resume_{s.started}"):
        try:
            jobs.resume(who.user_id, admin=admin, started=s.started)
        except BrainclfError as e:
            st.error(public(e))
    elif s.state == "done":
        st.success(f"{name}: done." + (" The new model is selectable in the sidebar." if s.result and
                                       Path(s.result).suffix == ".keras" else ""))
    elif s.state == "cancelled":
        st.warning(f"{name}: {public(s.error)}")
    elif (reason := s.failure_reason(who.user_id, admin)) is not None:
        st.error(f"{name} failed: {public(reason)}")
    else:
        st.error(f"{name} (started by {md_literal(s.owner_label)}) failed.")


def _results(state: dict, site_root: Path) -> None:
    st.subheader("Held-out part, after each step")
    split = {k: len(state["split"][k]) for k in PARTS}
    st.caption(md_literal(f"Site {state['site']}: {count(split['tune'])} tuning and {count(split['calibration'])} "
                          f"calibration slices (the adaptation part), {plural(split['heldout'], 'held-out slice')} "
                          f"that no step learns from; {plural(state['groups'], 'case group')}. Started from "
                          f"{state['model']['name']} {state['model']['version']}."
                          f"{left_out_words(state['split'].get('left_out'))}"))
    for warning in state["split"].get("warnings") or []:  # a naming scheme the case groups could not use
        st.warning(md_literal(warning), icon=":material/group_work:")
    st.table(pd.DataFrame(comparison_rows(state)), hide_index=True)
    for line in saved_models(state):  # which model each column is: a redone step saves under -2, -3, …
        st.caption(md_literal(line))
    curves = heldout_curves(state)
    last = state["steps"].get("adapt") or state["steps"].get("calibrate")
    final = last["heldout"] if last else state["steps"]["validate"]
    c1, c2 = st.columns(2)
    c1.plotly_chart(confusion_matrix_figure(final["confusion_matrix"],
                                            title=f"Held-out part, {plural(split['heldout'], 'slice')}"), key="site_cm")
    if curves:
        c2.plotly_chart(risk_coverage_figure(curves, title="Answered vs accuracy, held-out part"), key="site_rc")
    if set(final.get("by_sequence", {})) - {"unknown"}:  # a manifest.csv named the sequences
        st.table(pd.DataFrame([{"sequence": md_literal(seq), "slices": count(sub["n"]),
                                "accuracy": pct(sub["accuracy"])}
                               for seq, sub in sorted(final["by_sequence"].items())]), hide_index=True)
    for step in ("calibrate", "adapt"):
        if said := promise(state["steps"].get(step)):
            st.caption(f"{step.capitalize()}: {md_literal(said)}")
    adapt = state["steps"].get("adapt")
    if checked := forgetting(adapt):
        (st.warning if checked[1] else st.caption)(checked[0])
    wrong = misclassified_table(final)
    with st.expander(f"Misclassified held-out slices ({count(len(wrong))})"):
        st.dataframe(pd.DataFrame(map(csv_row, wrong)), hide_index=True)
        if wrong:
            _misclassified_gradcam(state, site_root, wrong)
    st.download_button("Go-live report (PDF)", site_report_pdf(state), file_name=f"go-live-{state['site']}.pdf",
                       mime="application/pdf", key="site_pdf")


def _misclassified_gradcam(state: dict, site_root: Path, wrong: list[dict]) -> None:
    """One misclassified held-out slice with the Grad-CAM of the class the last step's model gave it."""
    rel = st.selectbox("Show one with its Grad-CAM", [w["file"] for w in wrong], index=None, key="site_wrong",
                       placeholder="Pick a misclassified slice")
    if rel is None:
        return
    path = (site_root / rel).resolve()
    if not path.is_relative_to(site_root.resolve()) or not path.is_file():  # the run's rows name files in the folder
        st.warning("That slice is no longer in the site folder.")
        return
    last = state["steps"].get("adapt") or state["steps"].get("calibrate") or {}
    predictor = get_predictor(Path(last.get("model") or state["model"]["path"]), wait=False)
    if predictor is None or not model_ready(predictor):
        return
    try:
        pred = predictor.predict(path, name=path.name, explain=True)
    except BrainclfError as e:
        st.error(public(e))
        return
    row = next(w for w in wrong if w["file"] == rel)
    st.image(overlay_heatmap(pred.model_input, pred.heatmap), width=320,
             # An image caption renders Markdown (Streamlit 1.67): escaped, though a card's name is letters,
             # digits, '-' and '_'.
             caption=md_literal(f"Grad-CAM of {class_label(pred.predicted)} ({predictor.card.name}); labelled "
                                f"{class_label(row['true'])}"))

