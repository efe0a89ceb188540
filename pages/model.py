"""Model: the available models, uploading one, and training a new one in the background."""

from pathlib import Path

import pandas as pd
import streamlit as st

from brainclf.card import add_model
from brainclf.errors import BrainclfError
from brainclf.figures import history_figure
from brainclf.models import ARCHITECTURES, DEFAULT_ARCHITECTURE
from brainclf.train import PRECISIONS, TrainConfig
from pages.common import (
    MODELS_DIR,
    available_models,
    card_of,
    data_root,
    is_study,
    route_through_app,
    training_jobs,
)

route_through_app()
st.title("Models")

# ---- available models ---------------------------------------------------------------------------------------
rows = []
for p in available_models():
    card = card_of(p)
    if card is None:
        continue
    test = card.test_metrics()
    rows.append({"model": p.stem, "architecture": card.architecture, "parameters": card.params,
                 "input": f"{card.contract.size}px×{card.contract.channels}",
                 "test accuracy": test.get("accuracy"), "macro AUC": test.get("macro_auc"),
                 "flip TTA": card.tta_default, "epochs": card.training.get("epochs_run"), "version": card.version,
                 "use": "study/baseline: not for reading scans" if is_study(card) else "research"})
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption("Pick the active model in the sidebar.")
else:
    st.warning(f"No models with cards in {MODELS_DIR}.")

# ---- upload ---------------------------------------------------------------------------------------------------
with st.expander("Upload a model (.keras with its .json card)"):
    up_model = st.file_uploader("Model file (.keras)", type=["keras"], key="up_model")
    up_card = st.file_uploader("Model card (.json)", type=["json"], key="up_card")
    if up_model and up_card and st.button("Check and add", key="up_add"):
        try:
            added = add_model(Path(up_model.name).stem, up_model.getvalue(), up_card.getvalue(), MODELS_DIR)
            st.success(f"Added {added.stem}; it is now selectable in the sidebar.")
        except BrainclfError as e:
            st.error(f"Refused: {e}")

# ---- training -------------------------------------------------------------------------------------------------
st.subheader("Train a new model")
jobs = training_jobs()
with st.form("train_form"):
    c1, c2 = st.columns(2)
    folder = c1.text_input("Data folder (Training/Testing or class folders)", value=data_root() or "")
    name = c2.text_input("Model name", value="my_model")
    arch_names = list(ARCHITECTURES)
    arch = c1.selectbox("Architecture", arch_names, index=arch_names.index(DEFAULT_ARCHITECTURE),
                        format_func=lambda a: f"{a} — {ARCHITECTURES[a].description}")
    size = c2.number_input("Input size (px, 0 = architecture default)", 0, 512, 0, step=8)
    epochs = c1.number_input("Epochs", 1, 500, 30)
    batch = c2.number_input("Batch size", 1, 512, 32)
    augment = c1.checkbox("Augmentation (flips, rotation, zoom, shift, contrast)", value=True)
    limit = c2.number_input("Use at most N training images (0 = all)", 0, 100000, 0)
    precision = c1.selectbox("Training arithmetic", PRECISIONS,
                             help="mixed_bfloat16: about 1.7x faster on CPUs with bfloat16 units; the saved "
                             "model is float32 either way")
    submitted = st.form_submit_button("Start training", type="primary", disabled=jobs.busy())

if submitted:
    if not name.strip() or not name.replace("_", "").replace("-", "").isalnum():
        st.error("Model name must be letters, digits, '-' or '_'.")
    elif (MODELS_DIR / f"{name}.keras").exists():
        st.error(f"A model named {name} already exists; choose another name.")
    elif not folder:
        st.error("Enter the data folder.")
    else:
        config = TrainConfig(architecture=arch, image_size=int(size) or None, epochs=int(epochs),
                             batch_size=int(batch), augment=augment, max_train_images=int(limit) or None,
                             precision=precision)
        try:
            jobs.start(config, folder, name, models_dir=MODELS_DIR)
            st.toast(f"Training {name} started")
        except BrainclfError as e:
            st.error(str(e))


@st.fragment(run_every=1.0)
def training_panel():
    s = jobs.status
    if s is None:
        st.caption("No training has run in this app yet. One training runs at a time; other sessions keep "
                   "predicting while it runs.")
        return
    p = s.progress
    if s.active:
        if p and p.stage == "training" and p.epochs:
            done = (p.epoch + p.batch / max(p.batches, 1) * (p.batch < p.batches)) / p.epochs
            eta = p.elapsed_s / done - p.elapsed_s if done > 0 else 0
            st.progress(min(done, 1.0), text=f"Training **{s.name}**: epoch {p.epoch}/{p.epochs}, "
                        f"batch {p.batch}/{p.batches} — {p.elapsed_s:.0f}s elapsed, ~{eta:.0f}s left")
        else:
            st.progress(0.0, text=f"{s.name}: {p.message if p else 'starting…'}")
        if st.button("Cancel training", key="cancel_train"):
            jobs.cancel()
            st.toast("Cancelling after the current batch…")
    elif s.state == "done":
        st.success(f"Trained {s.name} → {s.result}. Select it in the sidebar.")
    elif s.state == "cancelled":
        st.warning(s.error)
    else:
        st.error(f"Training {s.name} failed: {s.error}")
    if p and p.history.get("loss"):
        st.plotly_chart(history_figure(p.history), key="live_history")


training_panel()
