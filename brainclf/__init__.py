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
