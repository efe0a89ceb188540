"""Inference: running a model. Predictor (one image), batch prediction (sample lists, folders into a CSV),
Grad-CAM, the OOD guard, and the app's model process (ProcessPredictor; model_worker runs in it).

Import from here: the names in __all__ are this layer's public API (pages, CLI, tests, higher layers' entry points).
Modules not listed keep their own names for their tests."""

from importlib import import_module

from .batch_predict import CSV_FIELDS, predict_folder, predict_samples, predict_samples_and_features
from .explain import GradCam, jet_colormap, overlay_heatmap, penultimate_features
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

# inference_process imports model_worker: loaded on first use (PEP 562), so that `python -m
# brainclf.inference.model_worker` (the model process) does not import model_worker twice through this package.
_LAZY = {"ModelProcess": ".inference_process", "ProcessPredictor": ".inference_process",
         "add_uploaded_model": ".inference_process"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["COLOUR_THRESHOLD", "CSV_FIELDS", "GradCam", "ModelProcess", "Prediction", "Predictor", "ProcessPredictor",
           "QUANTILE", "add_uploaded_model", "check", "colourfulness", "fit_feature_model", "fit_guard",
           "held_out_scores", "jet_colormap", "mahalanobis_scores", "non_mri_images", "overlay_heatmap",
           "penultimate_features", "predict_folder", "predict_samples", "predict_samples_and_features"]
