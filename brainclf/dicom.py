"""DICOM input: MR slices → 8-bit PIL images for the one preprocessing function, without leaking PHI.

Pixel pipeline (DICOM PS3.3 C.11): stored values → Modality LUT (rescale slope/intercept) → VOI LUT or
window centre/width when present (otherwise the full range of the frame) → 8 bits, MONOCHROME1 inverted
so that high signal is always bright.

Privacy: only the tags in SAFE_TAGS are ever returned. They are technical acquisition parameters kept by
the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile; free-text tags such as Series
Description are removed by that profile (they can hold names) and so are not shown either.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .errors import ImageError

# (keyword, label) of tags that are safe to show: not identifying under PS3.15 Annex E's basic profile.
SAFE_TAGS = (
    ("Modality", "Modality"),
    ("MRAcquisitionType", "MR acquisition"),
    ("MagneticFieldStrength", "Field strength (T)"),
    ("SliceThickness", "Slice thickness (mm)"),
    ("PixelSpacing", "Pixel spacing (mm)"),
    ("Rows", "Rows"),
    ("Columns", "Columns"),
    ("NumberOfFrames", "Frames"),
    ("PhotometricInterpretation", "Photometric interpretation"),
    ("BitsStored", "Bits stored"),
    ("RepetitionTime", "TR (ms)"),
    ("EchoTime", "TE (ms)"),
)


@dataclass
class DicomSlice:
    image: Image.Image  # 8-bit L (or RGB)
    frame: int
    n_frames: int
    metadata: dict[str, str] = field(default_factory=dict)  # SAFE_TAGS only


def looks_like_dicom(data: bytes, name: str | None = None) -> bool:
    return data[128:132] == b"DICM" or (name or "").lower().endswith((".dcm", ".dicom"))


def _safe_metadata(ds) -> dict[str, str]:
    out = {}
    for keyword, label in SAFE_TAGS:
        value = ds.get(keyword)
        if value is not None and str(value) != "":
            out[label] = str(value)
    return out


def _to_8bit(arr: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    arr = arr.astype(np.float64)
    lo = float(arr.min()) if lo is None else lo
    hi = float(arr.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((np.clip(arr, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)


def _first(value) -> float:
    """Window centre/width may be multi-valued (several presets): the first is the default."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def read_dicom(data: bytes, name: str = "file", frame: int | None = None) -> DicomSlice:
    """Decode one frame (default: the middle one) of an MR DICOM file. Raises ImageError when it cannot."""
    try:
        return _read_dicom(data, name, frame)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom parses lazily: a malformed element can fail anywhere
        raise ImageError(f"{name}: not a readable DICOM file (malformed data element: {type(e).__name__}).") from None


def _read_dicom(data: bytes, name: str, frame: int | None) -> DicomSlice:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes).")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")
        _ = ds.file_meta  # noqa: F841 - touching it surfaces a truncated header now
    except (InvalidDicomError, EOFError, ValueError, TypeError, AttributeError, KeyError, OSError) as e:
        raise ImageError(f"{name}: not a readable DICOM file ({type(e).__name__}).") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if "SOPClassUID" not in ds and "Modality" not in ds:
            raise ImageError(f"{name}: not a DICOM file (no DICOM header found).")
        raise ImageError(f"{name}: this DICOM file has no pixel data (e.g. a structured report or "
                         "presentation state), so there is no image to classify.")
    modality = str(ds.get("Modality", "")).upper()
    if modality and modality != "MR":
        raise ImageError(f"{name}: DICOM modality is {modality}, not MR; this model only reads MR brain slices.")
    from .preprocess import MAX_PIXELS

    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > MAX_PIXELS:
        raise ImageError(f"{name}: DICOM frame is {cols}x{rows} pixels, above the limit of {MAX_PIXELS:,}; "
                         "refused before decoding.")
    try:
        pixels = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - pydicom raises several types for missing decoders
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = f"{ts.name} ({ts})" if ts is not None else "unknown transfer syntax"
        hint = ""
        if ts is not None and getattr(ts, "is_compressed", False):
            hint = (" No installed decoder could read it (brainclf installs pylibjpeg with its libjpeg and "
                    "openjpeg plugins for JPEG, JPEG-LS and JPEG 2000; the data may be damaged). Export the "
                    "series uncompressed to use it.")
        detail = str(e).splitlines()[0][:120] if not hint else ""
        raise ImageError(f"{name}: cannot decode pixel data with transfer syntax {ts_name}.{hint}"
                         + (f" ({detail})" if detail else "")) from None
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    is_colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1
    if n_frames > 1:
        frame = n_frames // 2 if frame is None else frame
        if not 0 <= frame < n_frames:
            raise ImageError(f"{name}: frame {frame} requested but the file has {n_frames} frames (0-{n_frames - 1}).")
        pixels = pixels[frame]
    else:
        frame = 0
    if is_colour:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        img = Image.fromarray(_to_8bit(pixels, 0, float(2 ** int(ds.get("BitsStored", 8)) - 1)), mode="RGB")
        return DicomSlice(img, frame, n_frames, _safe_metadata(ds))
    values = apply_modality_lut(pixels, ds)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = (_first(ds.WindowCenter), _first(ds.WindowWidth))
        arr8 = _to_8bit(values, centre - width / 2, centre + width / 2)
    elif "VOILUTSequence" in ds:
        arr8 = _to_8bit(apply_voi_lut(values, ds, index=0))
    else:
        arr8 = _to_8bit(values)
    if photometric == "MONOCHROME1":  # low values are bright in MONOCHROME1
        arr8 = 255 - arr8
    if arr8.ndim != 2:
        raise ImageError(f"{name}: unexpected pixel array shape {arr8.shape} for a grayscale slice.")
    return DicomSlice(Image.fromarray(arr8, mode="L"), frame, n_frames, _safe_metadata(ds))
