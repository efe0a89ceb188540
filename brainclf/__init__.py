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
# The registered architectures and what they are (brainclf.model.architectures builds them); here so the CLI's
# --help and the Model page need no TensorFlow import.
ARCHITECTURE_DESCRIPTIONS = {
    "seed": "The original student-study CNN (2,364 parameters), kept as the baseline.",
    "compact_cnn": "The default: VGG-style CNN, 4 stages, grayscale input.",
    "compact_cnn_wide": "Wider compact CNN for GPU users.",
    "resnet_small": "Residual CNN (ResNet-18 layout at about a third of the width, 1.9 M parameters), "
                    "grayscale input.",
    "resnet_wide": "Residual CNN (ResNet-18 layout at five eighths of the width, 4.4 M parameters, 128 px), "
                   "grayscale input.",
    "compact_cnn_x2": "Ensemble of two independently trained compact CNNs (same split, different seeds), "
                      "logits averaged.",
}
ARCHITECTURE_NAMES = tuple(ARCHITECTURE_DESCRIPTIONS)
DEFAULT_ARCHITECTURE = "compact_cnn"
# Training arithmetic (brainclf.training.TrainConfig.precision); the saved model is float32 either way.
PRECISIONS = ("float32", "mixed_bfloat16")
# Keras backends brainclf trains on (KERAS_BACKEND; brainclf.model.backend); the card's training record names one.
TRAINING_BACKENDS = ("tensorflow", "jax")
# The input contract's optional steps (input.preprocess.InputContract.crop / .intensity; input.framing).
CROPS = ("none", "head")
INTENSITIES = ("none", "head-p99")
