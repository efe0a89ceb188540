"""Inference: running a model. Predictor (one image), batch prediction (sample lists, folders into a CSV),
Grad-CAM, the OOD guard, and the app's model process (ProcessPredictor; model_worker runs in it).

Import from here: the names in __all__ are this layer's public API (pages, CLI, tests, higher layers' entry points).
Modules not listed keep their own names for their tests."""

from .batch_predict import CSV_FIELDS, predict_folder, predict_samples, predict_samples_and_features
from .explain import GradCam, jet_colormap, overlay_heatmap, penultimate_features
from .inference_process import ModelProcess, ProcessPredictor, add_uploaded_model
from .ood import (
    COLOUR_THRESHOLD,
    QUANTILE,
    check,
    colourfulness,
    fit_feature_model,
    fit_guard,
    held_out_scores,
    mahalanobis_scores,
    non_mri_images,
)
from .predict import Prediction, Predictor

__all__ = ["COLOUR_THRESHOLD", "CSV_FIELDS", "GradCam", "ModelProcess", "Prediction", "Predictor", "ProcessPredictor",
           "QUANTILE", "add_uploaded_model", "check", "colourfulness", "fit_feature_model", "fit_guard",
           "held_out_scores", "jet_colormap", "mahalanobis_scores", "non_mri_images", "overlay_heatmap",
           "penultimate_features", "predict_folder", "predict_samples", "predict_samples_and_features"]
