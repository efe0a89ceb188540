"""brainclf: classify 2-D brain MRI slices (glioma, meningioma, no tumour, pituitary) and explain why.

Everything that computes lives here; the Streamlit app only lays out widgets and calls this package.
"""

__version__ = "0.1.0"

# Fixed class order: model outputs, confusion matrices and cards all use it.
CLASS_NAMES = ("glioma", "meningioma", "notumor", "pituitary")
DISPLAY_NAMES = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour",
    "pituitary": "Pituitary",
}
# Names of the registered architectures (brainclf.models builds them); here so the CLI's --help needs no
# TensorFlow import.
ARCHITECTURE_NAMES = ("seed", "compact_cnn", "compact_cnn_wide", "compact_cnn_x2")
DEFAULT_ARCHITECTURE = "compact_cnn"
# Training arithmetic (brainclf.training.TrainConfig.precision); the saved model is float32 either way.
PRECISIONS = ("float32", "mixed_bfloat16")
