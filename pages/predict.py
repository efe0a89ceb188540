"""Predict: upload slices, read calibrated probabilities, see Grad-CAM. Uploads stay in memory."""

import pandas as pd
import streamlit as st

from brainclf import CLASS_NAMES
from brainclf.audit import append_audit, audit_record
from brainclf.errors import BrainclfError
from brainclf.figures import image_with_heatmap, probability_bars
from brainclf.preprocess import decode_upload
from pages.common import REFER_BELOW, audit_path, class_label, get_predictor, route_through_app

route_through_app()
st.title("Predict")
st.caption("Research and education only — not for diagnosis.")
predictor = get_predictor()
if predictor is None:
    st.stop()

files = st.file_uploader("Upload MRI slices (JPEG, PNG or DICOM)", type=["jpg", "jpeg", "png", "dcm", "dicom"],
                         accept_multiple_files=True, key="uploads",
                         help="Files are processed in memory and never written to disk.")
if not files:
    st.info("Upload one or more brain MRI slices to classify them.")
    st.stop()

opacity = st.slider("Grad-CAM opacity", 0.0, 1.0, 0.45, 0.05, key="opacity")
rows, failed = [], []
for i, f in enumerate(files):
    data = f.getvalue()  # in memory only: uploads are never written to disk
    try:
        # Decoded once; only whitelisted technical DICOM tags (no patient, institution or free text) come back.
        image, dicom_tags = decode_upload(data, f.name)
        try:
            pred = predictor.predict(image, name=f.name, explain=True)  # Grad-CAM from the same pass
        except ValueError:  # a model whose card names unusable Grad-CAM layers: still give the prediction
            pred = predictor.predict(image, name=f.name)
    except BrainclfError as e:
        failed.append(f.name)
        st.error(f"**{f.name}** was not processed: {e}")
        if audit_path():
            append_audit(audit_path(), audit_record(data, error=str(e), model=predictor.card.name,
                                                    version=predictor.card.version))
        continue
    if audit_path():
        append_audit(audit_path(), audit_record(data, pred))
    rows.append(pred.as_row())
    with st.container(border=True):
        low = pred.referred if pred.refer_threshold else pred.confidence < REFER_BELOW
        badge = " :orange-badge[:material/warning: low confidence — refer to a radiologist]" if low else ""
        if pred.out_of_distribution:
            badge = " :red-badge[:material/block: not like a brain MRI slice]"
        st.markdown(f"#### {f.name}: **{pred.predicted_display}** ({pred.confidence:.1%}){badge}")
        if pred.out_of_distribution:
            st.warning(f"This input does not look like a brain MRI slice: {pred.ood_reason}. The class "
                       "probabilities below are not meaningful for it.", icon=":material/block:")
        c1, c2, c3 = st.columns([1, 1.2, 1.3])
        with c1:
            st.image(pred.model_input[..., 0] if pred.model_input.shape[-1] == 1 else pred.model_input,
                     caption=f"As the model sees it ({predictor.contract.size}×{predictor.contract.size})",
                     clamp=True, width="stretch")
        with c2:
            st.plotly_chart(probability_bars(pred.probabilities), key=f"bars{i}")
            target = st.selectbox("Grad-CAM for class", CLASS_NAMES, index=pred.predicted_index,
                                  format_func=class_label, key=f"cam_class{i}")
        with c3:
            try:
                heat = pred.heatmap if target == pred.predicted and pred.heatmap is not None else \
                    predictor.gradcam(pred.model_input, CLASS_NAMES.index(target))
                fig = image_with_heatmap(pred.model_input, heat, opacity, title=f"Grad-CAM: {class_label(target)}")
                st.plotly_chart(fig, key=f"cam{i}")
            except ValueError as e:
                st.warning(f"No Grad-CAM for this model: {e}")
        if dicom_tags:
            st.caption("DICOM: " + " · ".join(f"{k} {v}" for k, v in dicom_tags.items()))
        st.caption(f"Model {pred.model_name} {pred.model_version}")

if rows:
    st.subheader("Results")
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    st.download_button("Download CSV", table.to_csv(index=False).encode(), file_name="brainclf_predictions.csv",
                       mime="text/csv")
if failed:
    st.warning(f"{len(failed)} of {len(files)} files could not be processed: {', '.join(failed)}")
