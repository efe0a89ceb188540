"""brainclf — Streamlit front door. Pages only lay out widgets; everything that computes is in brainclf/."""

import streamlit as st

st.set_page_config(page_title="brainclf — brain MRI tumour classifier", page_icon=":material/neurology:", layout="wide")

from pages.common import route_through_app, sidebar_model_picker  # noqa: E402  (set_page_config must come first)

route_through_app()  # the first request of a fresh server can arrive in Streamlit's legacy pages/ mode

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/predict.py", title="Predict", icon=":material/search:"),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/monitoring:"),
    st.Page("pages/model.py", title="Model", icon=":material/model_training:"),
]
nav = st.navigation(pages)
sidebar_model_picker()
nav.run()
