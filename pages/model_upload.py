"""The Model page's uploaded models: add one (a .keras with its card, checked before it is installed) and
re-measure one's figures on this server's own test data (brainclf.evaluation.provenance)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from brainclf.errors import BrainclfError
from brainclf.escaping import md_literal
from brainclf.evaluation import own_test_data, provenance_note, training_source, verify_uploaded_model
from brainclf.inference import add_uploaded_model
from brainclf.input import MAX_UPLOAD_FILE_MB
from brainclf.serving import name_in_use
from pages.common import (
    available_models,
    card_of,
    model_listing,
    model_process_predictor,
    page_work,
    public,
    record_model_event,
    training_jobs,
)


def upload_section(who, config, models_dir: Path) -> None:
    with st.expander("Upload a model (.keras with its .json card)"):
        up_model = st.file_uploader("Model file (.keras)", type=["keras"], key="up_model",
                                    max_upload_size=MAX_UPLOAD_FILE_MB)
        up_card = st.file_uploader("Model card (.json)", type=["json"], key="up_card",
                                   max_upload_size=MAX_UPLOAD_FILE_MB)
        if up_model and up_card and st.button("Check and add", key="up_add"):
            try:
                if why := name_in_use(training_jobs(), config.runs_dir, Path(up_model.name).stem):
                    raise BrainclfError(f"{why}: rename the file.")
                added = add_uploaded_model(Path(up_model.name).stem, up_model.getvalue(), up_card.getvalue(),
                                           models_dir, uploaded_by=who.label, uploaded_by_id=who.user_id)
                record_model_event("model uploaded", added)
                st.success(f"Added {md_literal(added.stem)}; it is now selectable in the sidebar.")
            except BrainclfError as e:
                st.error(f"Refused: {public(e)}")


def remeasure_section(config) -> None:
    claimed = [p for p in available_models() if (listing := model_listing(p))["card"] and not listing["verified"]]
    if not claimed:
        return
    with st.expander("Re-measure an uploaded model on this server's data"):
        st.caption("An uploaded model's figures are its uploader's claim until measured here: this evaluates it "
                   "on the chosen dataset's test images (every split but Training) and records the result in "
                   "its card, with the figure claimed beside it.")
        c1, c2 = st.columns(2)
        to_verify = c1.selectbox("Uploaded model", claimed, format_func=lambda p: p.stem, key="verify_pick")
        picked = card_of(to_verify) if to_verify else None
        source = training_source(picked) if picked else None
        verify_on = c2.selectbox("Test data", [n for n in config.root_names() if picked and  # in-distribution
                                               own_test_data(picked, config.root(n).path)],
                                 key="verify_data", help="Its training source, or a test split of it.")
        if verify_on is None:
            st.caption(f"This server offers no dataset named {md_literal(source)}, its training source." if source
                       else "Its card names no training source: validate it with the site workflow instead.")
        elif st.button("Re-measure", key="verify_run", icon=":material/fact_check:"):
            bar = st.progress(0.0, text="Evaluating…")
            try:
                with page_work().hold("the re-measure"):
                    card = verify_uploaded_model(to_verify, config.root(verify_on).path,
                                                 lambda done, total: bar.progress(
                                                     done / max(total, 1), text=f"Evaluating {done} of {total}"),
                                                 predictor=model_process_predictor(to_verify))
                st.success(md_literal(provenance_note(card)))
            except (BrainclfError, OSError) as e:
                st.error(f"Not re-measured: {public(e)}")
