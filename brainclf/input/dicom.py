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
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Number

import numpy as np
from PIL import Image

from ..errors import ImageError
from .dicom_deflate import inflate_deflated
from .dicom_elements import check_element_count
from .dicom_frames import check_encoded_frame, check_native_length, check_pixel_budget
from .dicom_geometry import square_pixels
from .dicom_groups import use_frame_groups

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
    ("WindowCenter", "Window centre"),  # display defaults, not identifying (Annex E keeps them)
    ("WindowWidth", "Window width"),
)
# A shown tag is cut to this many characters (with an ellipsis): a caption line, however many values the tag holds.
MAX_SHOWN_CHARS = 64


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
        text = _shown(value) if value is not None else ""
        if text != "":
            out[label] = text
    return out


def _shown(value) -> str:
    """A tag's value as pydicom writes it ("[0.5, 0.5]" for several), cut to MAX_SHOWN_CHARS characters. Only the
    start of each part is turned into text: each value takes at least three characters, so later ones would be cut,
    and a sequence's items (no technical tag is one in a valid file) are not written out at all."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # pydicom's MultiValue
        items = [repr(v[:MAX_SHOWN_CHARS]) if isinstance(v, (str, bytes)) else str(v) if isinstance(v, Number)
                 else "…" for v in value[:MAX_SHOWN_CHARS]]
        text = f"[{', '.join(items)}]" if items else ""
    else:
        text = str(value[:MAX_SHOWN_CHARS + 1] if isinstance(value, (str, bytes)) else value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS - 1] + "…"


def apply_window(pixels: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Grey values (after the modality LUT) through a linear window: centre - width/2 is black, centre + width/2
    white, 8 bits (uint8, same shape). A width below 1 is taken as 1 (DICOM PS3.3 C.11.2.1.2); a window whose ends
    are not finite numbers (NaN, or beyond any float) shows the frame's full range (NaN would cast to any byte)."""
    width = max(float(width), 1.0)
    lo, hi = float(centre) - width / 2, float(centre) + width / 2
    return _to_8bit(pixels, lo, hi) if np.isfinite(lo) and np.isfinite(hi) else _to_8bit(pixels)


def window_defaults(ds, values: np.ndarray) -> tuple[float, float]:
    """(centre, width), both finite (the viewer's number inputs refuse anything else) and width at least 1 as
    apply_window takes it: the file's first WindowCenter/WindowWidth preset, else (none, an unreadable one, or one
    whose ends are not finite numbers: a display preset, not the data) the range of `values` (finite)."""
    preset = None
    try:  # pydicom converts an element when it is first read: a malformed one raises there (NotImplementedError, ...)
        if "WindowCenter" in ds and "WindowWidth" in ds:
            preset = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except Exception:  # noqa: BLE001 - any malformed preset: the frame's range, as for one that is not a number
        pass
    if preset is not None:
        centre, width = preset[0], max(preset[1], 1.0)
        if np.isfinite(centre - width / 2) and np.isfinite(centre + width / 2):
            return centre, width
    lo, hi = float(np.min(values)), float(np.max(values))
    return lo / 2 + hi / 2, max(min(hi - lo, float(np.finfo(np.float64).max)), 1.0)  # no overflow to infinity


def _to_8bit(arr: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    arr = arr.astype(np.float64)
    lo = float(arr.min()) if lo is None else lo
    hi = float(arr.max()) if hi is None else hi
    if not np.isfinite(hi - lo):  # a range wider than the largest float: halved, so that hi - lo is a number
        arr, lo, hi = arr / 2, lo / 2, hi / 2
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((np.clip(arr, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)


def _first(value) -> float:
    """Window centre/width may be multi-valued (several presets): the first is the default. NaN for an empty
    or unreadable value (window_defaults then uses the frame's range, as for any preset that is not a number)."""
    try:
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # pydicom's MultiValue
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return float("nan")


def read_dicom(data: bytes, name: str = "file", frame: int | None = None) -> DicomSlice:
    """Decode one frame (default: the middle one) of an MR DICOM file. Raises ImageError when it cannot."""
    try:
        return _read_dicom(data, name, frame)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom parses lazily: a malformed element can fail anywhere
        raise ImageError(f"{name}: not a readable DICOM file (malformed data element: {type(e).__name__}).") from None


def _read_dicom(data: bytes, name: str, frame: int | None) -> DicomSlice:
    ds, n_frames, frame = open_frame(data, name, frame)
    image = square_pixels(ds, _slice_image(ds, decode_frame(ds, frame, name), name))
    return DicomSlice(image, frame, n_frames, _safe_metadata(ds))


def read_header(data: bytes, name: str):
    """The dataset up to its pixel data, which is not read (a Deflate file is inflated only that far), its modality
    and pixel budget checked as open_frame checks them: what the header alone says (frames, series, position).

    Raises:
        ImageError: not a readable MR DICOM header, or pixel data over the limits.
    """
    import pydicom

    check_element_count(data, name)
    data = inflate_deflated(data, name, header_only=True)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM", stop_before_pixels=True)
        modality = str(ds.get("Modality", "")).upper()[:16]  # free text: a message quotes 16 characters at most
        if modality and modality != "MR":
            raise ImageError(f"{name}: DICOM modality is {modality}, not MR; this model only reads MR brain slices.")
        check_pixel_budget(ds, name)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom parses lazily: a malformed element can fail anywhere
        raise ImageError(f"{name}: not a readable DICOM file ({type(e).__name__}).") from None
    return ds


def open_frame(data: bytes, name: str, frame: int | None):
    """(dataset, number of frames, the frame to read: default the middle one), every limit checked on the header
    and on the chosen frame's codestream; nothing decoded yet."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes).")
    check_element_count(data, name)  # before pydicom makes an object of each of millions of elements
    data = inflate_deflated(data, name)  # bounded by the header, before pydicom would inflate it whole
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
    modality = str(ds.get("Modality", "")).upper()[:16]  # free text: a message quotes 16 characters at most
    if modality and modality != "MR":
        raise ImageError(f"{name}: DICOM modality is {modality}, not MR; this model only reads MR brain slices.")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    check_pixel_budget(ds, name)
    if n_frames > 1:
        frame = n_frames // 2 if frame is None else frame
        if not 0 <= frame < n_frames:
            raise ImageError(f"{name}: frame {frame} requested but the file has {n_frames} frames (0-{n_frames - 1}).")
    else:
        frame = 0
    check_encoded_frame(ds, frame, n_frames, name)  # the codestream's own size, before a decoder allocates it
    check_native_length(ds, n_frames, name)
    use_frame_groups(ds, frame)  # an enhanced file's window, rescale and spacing, where the pipeline reads them
    return ds, n_frames, frame


def decode_frame(ds, frame: int, name: str):
    """The pixel array of the one frame the model reads, by index: pydicom would otherwise decode every frame it
    finds in the pixel data."""
    from pydicom.pixels import pixel_array

    try:
        pixels = pixel_array(ds, index=frame)
    except Exception as e:  # noqa: BLE001 - pydicom raises several types for missing decoders
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = f"{ts.name} ({ts})" if ts is not None else "unknown transfer syntax"
        hint = ""
        if ts is not None and getattr(ts, "is_compressed", False):
            hint = (" No installed decoder could read it (brainclf installs pylibjpeg with its libjpeg and "
                    "openjpeg plugins for JPEG, JPEG-LS and JPEG 2000; the data may be damaged). Export the "
                    "series uncompressed to use it.")
        if not hint:  # uncompressed: the header and the pixel data disagree (length, bits), not the syntax
            raise ImageError(f"{name}: the DICOM's pixel data does not match what its header says ({_words(e)}); "
                             "check the export.") from None
        raise ImageError(f"{name}: cannot decode pixel data with transfer syntax {ts_name}.{hint}") from None
    return pixels


def _words(error: Exception, limit: int = 120) -> str:
    """A library's message, first line, cut at a word within `limit` characters."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + "…"


def _slice_image(ds, pixels, name: str) -> Image.Image:
    """Pixels as an 8-bit image: RGB for colour (pydicom's pixel_array has already turned YBR into RGB) and for
    a palette (its colour table applied), else grayscale through the modality LUT and the file's window (or VOI
    LUT), inverted for MONOCHROME1."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":  # the stored values are indices into the file's colour table
        if any(f"Segmented{c}PaletteColorLookupTableData" in ds for c in ("Red", "Green", "Blue")):
            # pydicom expands a segmented table before any length check: 19 KB of segments made 1 GB of entries.
            raise ImageError(f"{name}: this DICOM's colour table is segmented, which is not read; export the slice "
                             "as greyscale (MONOCHROME2).")
        rgb = apply_color_lut(pixels, ds)  # 8- or 16-bit table entries: their top byte, without a float copy
        return Image.fromarray((rgb >> 8 * (rgb.itemsize - 1)).astype(np.uint8), mode="RGB")
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        return Image.fromarray(_to_8bit(pixels, 0, float(2 ** int(ds.get("BitsStored", 8)) - 1)), mode="RGB")
    if _first(ds.get("RescaleSlope", 1)) == 0:
        raise ImageError(f"{name}: the DICOM's Rescale Slope is 0, which makes every pixel the same grey value; "
                         "check the export.")
    values = apply_modality_lut(pixels, ds)
    if not np.isfinite(values).all():
        what = ("its pixel values include numbers that are not finite (NaN or infinity)"
                if not np.isfinite(np.asarray(pixels, np.float64)).all() else
                "its Rescale Slope or Intercept is not a finite number or scales the values beyond any number")
        raise ImageError(f"{name}: the DICOM's grey values cannot be read: {what}; check the export.")
    if "WindowCenter" in ds and "WindowWidth" in ds:
        arr8 = apply_window(values, *window_defaults(ds, values))
    elif "VOILUTSequence" in ds:
        arr8 = _to_8bit(apply_voi_lut(values, ds, index=0))
    else:
        arr8 = _to_8bit(values)
    if photometric == "MONOCHROME1":  # low values are bright in MONOCHROME1
        arr8 = 255 - arr8
    if arr8.ndim != 2:
        raise ImageError(f"{name}: unexpected pixel array shape {arr8.shape} for a grayscale slice.")
    return Image.fromarray(arr8, mode="L")
