"""A DICOM upload as a stack and as grey values: its number of frames (a multi-frame file is a study of that
many slices, at most limits.MAX_STACK_FRAMES) and one frame's values after the modality LUT with the file's
default window, for the viewer's window/level controls (dicom.apply_window turns them into 8 bits).

Every limit of brainclf.input.dicom holds: the header is checked before a frame is decoded, and only one frame is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ImageError
from . import limits
from .dicom import decode_frame, looks_like_dicom, open_frame, window_defaults


@dataclass
class FrameValues:
    values: np.ndarray  # float32 (rows, columns): stored values through the modality LUT
    centre: float  # the default window: the file's first preset, else the frame's full range
    width: float
    invert: bool  # MONOCHROME1: low values are bright


def frame_count(data: bytes, name: str) -> int:
    """How many frames a DICOM upload holds (1 for JPEG/PNG, and for a file whose header cannot be read: its
    decoding then says why)."""
    if not data or not looks_like_dicom(data, name):
        return 1
    try:
        _, n_frames, _ = open_frame(data, name, 0)
    except Exception:  # noqa: BLE001 - any unreadable header: the decode reports it with its message
        return 1
    return n_frames


def study_frames(data: bytes, name: str) -> int:
    """How many slices an upload is read as: its frames, or 1 (one case) for a single image and for a file over
    MAX_STACK_FRAMES frames, whose decoding then refuses it with check_stack's message."""
    n = frame_count(data, name)
    return n if n <= limits.MAX_STACK_FRAMES else 1


def check_stack(n_frames: int, name: str) -> None:
    """Refuse a multi-frame DICOM with more frames than the Predict page reads as one study."""
    if n_frames > limits.MAX_STACK_FRAMES:
        raise ImageError(f"{name}: this DICOM holds {n_frames} frames; at most {limits.MAX_STACK_FRAMES} are read "
                         "as one study. Export the series in parts (or the slices of interest) and upload those.")


def frame_values(data: bytes, name: str, frame: int | None = None) -> FrameValues | None:
    """One grayscale frame's grey values and default window; None for a colour DICOM (no window applies)."""
    from pydicom.pixels import apply_modality_lut

    try:
        ds, n_frames, frame = open_frame(data, name, frame)
        if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
            return None
        values = np.asarray(apply_modality_lut(decode_frame(ds, frame, n_frames, name), ds), dtype=np.float32)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom parses lazily: a malformed element can fail anywhere
        raise ImageError(f"{name}: not a readable DICOM file (malformed data element: {type(e).__name__}).") from None
    if values.ndim != 2:
        raise ImageError(f"{name}: unexpected pixel array shape {values.shape} for a grayscale slice.")
    centre, width = window_defaults(ds, values)
    return FrameValues(values, centre, width, str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1")
