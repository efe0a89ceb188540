"""Model: the available models, uploading one, and training a new one in the background."""


import pandas as pd
import streamlit as st

from brainclf import ARCHITECTURE_DESCRIPTIONS, DEFAULT_ARCHITECTURE, PRECISIONS
from brainclf.data import source_at
from brainclf.errors import BrainclfError
from brainclf.escaping import csv_row, md_literal
from brainclf.presentation import count, history_figure
from brainclf.serving import discard_interrupted, interrupted_runs, name_in_use, owner_run_dir, resume_interrupted
from brainclf.training import TrainConfig
from pages.common import (
    available_models,
    data_root,
    model_listing,
    models_dir,
    public,
    record_model_event,
    redraw_page_when_job_ends,
    require,
    route_through_app,
    settings,
    training_jobs,
)
from pages.model_removal import removal_section
from pages.model_upload import remeasure_section, upload_section
from pages.site_workflow import site_section

route_through_app(once_per_session=True)  # its buttons (site steps, training) must survive AppTest's runs
who = require("open_model")  # researchers and admins (the navigation hides this page from clinicians)
config = settings()
MODELS_DIR = models_dir()
HEAD_STEPS = {"crop": "head", "intensity": "head-p99"}  # the form's "Crop to the head": two steps of the contract
st.title("Models")

# ---- available models ---------------------------------------------------------------------------------------
rows = [listing["row"] for p in available_models() if (listing := model_listing(p))["row"] is not None]
if rows:
    st.dataframe(pd.DataFrame(map(csv_row, rows)), hide_index=True,
                 column_config={"model": st.column_config.TextColumn(width="medium"),
                                "version": st.column_config.TextColumn(width="medium")})
    st.caption("Pick the active model in the sidebar.")
else:
    st.warning("No models with cards are installed on this server yet.")

# ---- upload (researchers) and removal (admins) --------------------------------------------------------------
if who.can("upload_model"):
    upload_section(who, config, MODELS_DIR)
if who.can("re_evaluate") and config.root_names():
    remeasure_section(config)
if who.can("remove_model"):
    removal_section(who, MODELS_DIR)

# ---- training (researchers and admins) --------------------------------------------------------------------------
jobs = training_jobs()


def training_form() -> None:
    st.subheader("Train a new model")
    roots = config.root_names()
    if not roots:
        st.info("This server offers no dataset to train on ($BRAINCLF_DATA or [data] in brainclf.toml).")
        return
    if st.session_state.get("train_data") not in roots:
        here = config.root_of(data_root())
        st.session_state["train_data"] = here.name if here else roots[0]
    with st.form("train_form"):
        c1, c2 = st.columns(2)
        dataset = c1.selectbox("Dataset (Training/Testing or class folders)", roots, key="train_data",
                               help="The datasets this server offers, by name.")
        name = c2.text_input("Model name", value="my_model")
        arch_names = list(ARCHITECTURE_DESCRIPTIONS)
        arch = c1.selectbox("Architecture", arch_names, index=arch_names.index(DEFAULT_ARCHITECTURE),
                            format_func=lambda a: f"{a} — {ARCHITECTURE_DESCRIPTIONS[a]}")
        size = c2.number_input("Input size (px, 0 = architecture default)", 0, 512, 0, step=8)
        epochs = c1.number_input("Epochs", 1, 500, 30)
        batch = c2.number_input("Batch size", 1, 512, 32)
        augment = c1.checkbox("Augmentation (flips, rotation, zoom, shift, contrast)", value=True)
        limit = c2.number_input("Use at most N training images (0 = all)", 0, 100000, 0)
        precision = c1.selectbox("Training arithmetic", PRECISIONS,
                                 help="mixed_bfloat16: about 1.7x faster on CPUs with bfloat16 units; the saved "
                                 "model is float32 either way")
        patience = c2.number_input("Early-stopping patience (epochs)", 1, 500, 12, key="train_patience",
                                   help="Stop after this many epochs without a lower calibrated validation loss; "
                                   "the best epoch is kept either way. The default model's recipe used 40 (all).")
        e1, e2 = st.columns([3, 1])  # the other sources and their weight side by side, below the two columns
        also = e1.multiselect("Also learn from (other labelled sources)", roots, key="train_extra",
                              help="Each is split by case groups into training, validation and a held-out part "
                              "that the model is then validated on (external validation); the card records each "
                              "source's licence. The default model learnt from external-radiopaedia, weight 2.")
        weight = e2.number_input("Their loss weight", 0.5, 10.0, 2.0, step=0.5, key="train_extra_weight",
                                 help="Multiplies the loss of their training slices: a small source can weigh as "
                                 "much as a large one")
        a1, a2 = st.columns(2)
        intensity = a1.checkbox("Intensity augmentation (gamma, brightness, noise)", value=True,
                                key="train_intensity", help="Sources differ in windowing and noise; the default "
                                "model was trained with it")
        head = a2.checkbox("Crop to the head and scale its intensities", value=False, key="train_head",
                           help="Part of the model's input contract: every slice it reads, in training and "
                           "prediction, is cropped to the head's box and scaled so the head's 99th percentile is "
                           "white (sources frame and window the same anatomy differently)")
        submitted = st.form_submit_button("Start training", type="primary", disabled=jobs.busy())
    if submitted:
        start_training(dataset, name, also, float(weight), dict(
            architecture=arch, image_size=int(size) or None, epochs=int(epochs), batch_size=int(batch),
            augment=augment, max_train_images=int(limit) or None, precision=precision, augment_intensity=intensity,
            early_stopping_patience=int(patience), **(HEAD_STEPS if head else {})))


def start_training(dataset: str, name: str, also: list[str], weight: float, settings: dict) -> None:
    """The form's training as a background job on `dataset`, also learning from the roots `also` at `weight`."""
    try:
        extra = tuple(source_at(config.folder(n), weight) for n in also)
        train_config = TrainConfig(**settings, extra_sources=[{"name": s.name, "weight": s.weight} for s in extra])
        # jobs.start checks the name (brainclf.input.limits' rule) and that no model has it yet
        if why := name_in_use(jobs, config.runs_dir, name, owner=who.user_id):
            raise BrainclfError(f"{why[0].upper()}{why[1:]}: choose another name.")
        jobs.start(train_config, config.folder(dataset), name, models_dir=MODELS_DIR, owner=who.user_id,
                   owner_label=who.label, run_dir=owner_run_dir(config.runs_dir, who.user_id, name),
                   extra_data=extra)
        record_model_event("training started", MODELS_DIR / f"{name}.keras")
        st.toast(f"Training {md_literal(name)} started")
    except BrainclfError as e:
        st.error(public(e))


def interrupted_section() -> None:
    """After a server restart the app's job is gone; the user's run folders still hold their finished epochs."""
    runs = interrupted_runs(config.runs_dir, who.user_id, current=jobs.status)
    if not runs or jobs.busy():
        return
    st.caption("Unfinished trainings of yours (cancelled, failed, or stopped by a server restart): each resumes "
               "from its last finished epoch (or, trained to the end, goes straight to saving its model), with the "
               "settings and data it started with, and holds its model name until it is discarded (set aside, "
               "nothing deleted).")
    for r in runs:
        c1, c2, c3 = st.columns([4, 1, 1])
        sources = " + ".join([r.data] + [name for name, _ in r.extra])
        c1.text(f"{r.name}: trained ({r.epoch} epochs) on {sources}, its model not saved yet" if r.to_save else
                f"{r.name}: {r.epoch} of {r.config.epochs} epochs, on {sources}")
        if c2.button("Save" if r.to_save else "Resume", key=f"resume_interrupted_{r.name}",
                     icon=":material/play_arrow:"):
            try:
                resume_interrupted(jobs, r, [root.path for root in config.data_roots], MODELS_DIR, who.user_id,
                                   who.label)
                st.toast(f"Training {md_literal(r.name)} resumed")
            except BrainclfError as e:
                st.error(public(e))
        discard_button(c3, r.name, r.run_dir, f"discard_interrupted_{r.name}", who.user_id)


def discard_button(column, name: str, run_dir, key: str, by: str) -> None:
    """Set a run aside (nothing deleted): it no longer offers a resume nor holds its model name."""
    if column.button("Discard", key=key, icon=":material/delete:"):
        try:
            discard_interrupted(name, run_dir, jobs, by=by)
            st.toast(f"Training {md_literal(name)} set aside: its name is free")
            st.rerun(scope="app")
        except BrainclfError as e:
            st.error(public(e))


def others_unfinished_section() -> None:
    """Admins: every user's unfinished trainings hold their model names; one no longer wanted can be set aside."""
    runs = interrupted_runs(config.runs_dir, None, current=jobs.status,
                            exclude=owner_run_dir(config.runs_dir, who.user_id, ""))  # theirs: listed above
    if not runs:
        return
    with st.expander(f"Other users' unfinished trainings ({count(len(runs))}): each holds its model name"):
        for r in runs:
            c1, c2 = st.columns([5, 1])
            c1.text(f"{r.name}: {r.epoch} of {r.config.epochs} epochs ({r.run_dir.parent.name})")
            discard_button(c2, r.name, r.run_dir, f"discard_other_{r.run_dir.parent.name}_{r.name}", who.user_id)


if who.can("train"):
    training_form()
    interrupted_section()
if who.can("cancel_any_training"):
    others_unfinished_section()


def resume_button(s, who) -> None:
    """"Resume training NAME" for the owner or an admin, when the last run stopped with a state to go on from."""
    admin = who.can("cancel_any_training")
    if not (who.can("train") and s.may_cancel(who.user_id, admin) and s.resumable()):
        return
    # Keyed by the job's start: a click on a button drawn for a job that has ended since reaches no other job.
    resume, discard = st.columns([3, 1])
    if resume.button(f"Resume training {md_literal(s.name)}", key=f"resume_train_{s.started}",
                     icon=":material/play_arrow:"):
        try:
            jobs.resume(who.user_id, admin=admin, started=s.started)
            st.toast(f"Training {md_literal(s.name)} resumed")
        except BrainclfError as e:
            st.error(public(e))
    if "config" in s.request:  # a training's run (a site step's epochs are its site run's)
        discard_button(discard, s.name, s.run_dir, f"discard_train_{s.started}", who.user_id)


@st.fragment(run_every=1.0)
def training_panel():
    # Who, asked again on each redraw: a role taken away meanwhile must not keep this panel's buttons.
    who = require("open_model")
    s = jobs.status
    redraw_page_when_job_ends(s, "job_panel")  # one key for both panels: one redraw
    if s is not None and s.request.get("kind") == "site":  # the site section below shows its own steps
        if s.active:  # Start training is disabled: say why
            st.caption(f"A site step is running ({md_literal(s.name)}, started by {md_literal(s.owner_label)}): "
                       "a training can start once it ends. One job, a training or a site step, runs at a time.")
            return
        s = None
    if s is None:
        st.caption("No training is running. One job, a training or a site step, runs at a time; other sessions "
                   "keep predicting while it runs.")
        return
    p = s.progress
    # Others see who started it (a sign-in display name, escaped); the owner and local mode need no name.
    by = "" if s.may_cancel(who.user_id) or who.local else f" (started by {md_literal(s.owner_label)})"
    name = md_literal(s.name)
    if s.active:
        what = "Training" if p and p.stage == "training" else "Preparing" if p and p.stage == "preparing" else ""
        text = public(p.text()) if p else "starting…"
        st.progress(p.fraction_done() if p else 0.0, text=f"{what} **{name}**{by}: {text}".strip())
        if p and p.stage == "evaluating":
            st.caption("The final evaluation saves the model; it cannot be cancelled part-way.")
        elif s.may_cancel(who.user_id, who.can("cancel_any_training")):
            if st.button("Cancel training", key=f"cancel_train_{s.started}"):  # this job's, as Resume
                try:
                    jobs.cancel(who.user_id, admin=who.can("cancel_any_training"), started=s.started)
                    st.toast("Cancelling after the current batch…")
                except BrainclfError as e:
                    st.error(public(e))
        else:
            st.caption("Only the person who started this training, or an admin, can cancel it.")
    elif s.state == "done":
        st.success(f"Trained {name}. Select it in the sidebar.")
    elif s.state == "cancelled" and p and p.stage == "cancelled":
        st.warning(f"Training {name}{by} was cancelled after {p.epoch} of {p.epochs} epochs.")
    elif s.state == "cancelled":
        st.warning(public(s.error))
    elif (reason := s.failure_reason(who.user_id, who.is_admin)) is not None:
        st.error(f"Training {name} failed: {public(reason)}")
    else:
        st.error(f"Training {name}{by} failed.")
    if not s.active:
        resume_button(s, who)
    if p and p.history.get("loss"):
        st.plotly_chart(history_figure(p.history), key="live_history")


training_panel()

if who.can("site_workflow"):
    site_section(who)
