"""A DICOM upload as a stack and as grey values: its number of frames (a multi-frame file is a study of that
many slices, at most limits.MAX_STACK_FRAMES), single-frame slices of one series grouped into such a study
(series_groups), and one frame's values after the modality LUT with the file's
default window, for the viewer's window/level controls (dicom.apply_window turns them into 8 bits).

Every limit of brainclf.input.dicom holds: the header is checked before a frame is decoded, and only one frame is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..errors import ImageError
from . import limits
from .dicom import decode_frame, looks_like_dicom, open_frame, read_header, window_defaults
from .dicom_frames import native_pixel_bytes
from .dicom_geometry import square_pixels


@dataclass
class FrameValues:
    values: np.ndarray  # float32 (rows, columns): stored values through the modality LUT
    centre: float  # the default window: the file's first preset, else the frame's full range
    width: float
    invert: bool  # MONOCHROME1: low values are bright


def frame_count(data: bytes, name: str) -> int:
    """How many frames a DICOM upload holds (1 for JPEG/PNG, and for a file whose header cannot be read: its
    decoding then says why)."""
    return _frames(_header(data, name))


def study_frames(data: bytes, name: str) -> int:
    """How many slices an upload is read as: its frames, or 1 (one case) for a single image, for a file over
    MAX_STACK_FRAMES frames (its decoding then refuses it with check_stack's message) and for an uncompressed file
    whose bytes cannot hold the frames its header declares (one case whose decoding says so, not one failing case
    per frame). The header is parsed once."""
    ds = _header(data, name)
    n = _frames(ds)
    return n if n <= limits.MAX_STACK_FRAMES and not (n > 1 and _cut_short(ds, len(data), n)) else 1


def _header(data: bytes, name: str):
    """The DICOM header of an upload, or None (JPEG/PNG, or a header that cannot be read: the decode says why)."""
    if not data or not looks_like_dicom(data, name):
        return None
    try:
        return read_header(data, name)
    except Exception:  # noqa: BLE001 - any unreadable header: the decode reports it with its message
        return None


def _frames(ds) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1) if ds is not None else 1
    except Exception:  # noqa: BLE001 - a Number of Frames that cannot be read as a number: the decode says so
        return 1


def _cut_short(ds, file_bytes: int, n_frames: int) -> bool:
    try:
        ts = ds.file_meta.TransferSyntaxUID
        return not (ts.is_encapsulated or ts.is_deflated) and file_bytes < native_pixel_bytes(ds, n_frames)
    except Exception:  # noqa: BLE001 - an unreadable header element: the decode says why
        return False


def check_stack(n_frames: int, name: str) -> None:
    """Refuse a multi-frame DICOM with more frames than the Predict page reads as one study."""
    if n_frames > limits.MAX_STACK_FRAMES:
        raise ImageError(f"{name}: this DICOM holds {n_frames} frames; at most {limits.MAX_STACK_FRAMES} are read "
                         "as one study. Export the series in parts (or the slices of interest) and upload those.")


def frame_values(data: bytes, name: str, frame: int | None = None) -> FrameValues | None:
    """One grayscale frame's grey values (all finite) and default window (finite, width at least 1); None for a colour
    DICOM, a palette one included (its stored values are indices into its colour table: no window applies)."""
    from pydicom.pixels import apply_modality_lut

    try:
        ds, n_frames, frame = open_frame(data, name, frame)
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        if int(ds.get("SamplesPerPixel", 1) or 1) > 1 or photometric == "PALETTE COLOR":
            return None
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 becomes infinity: refused below
            values = np.asarray(apply_modality_lut(decode_frame(ds, frame, name), ds), dtype=np.float32)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom parses lazily: a malformed element can fail anywhere
        raise ImageError(f"{name}: not a readable DICOM file (malformed data element: {type(e).__name__}).") from None
    if values.ndim != 2:
        raise ImageError(f"{name}: unexpected pixel array shape {values.shape} for a grayscale slice.")
    if not np.isfinite(values).all():  # NaN pixels, or a Rescale Slope such as 1e36 that takes them past float32
        raise ImageError(f"{name}: the DICOM's grey values cannot be shown: some are not finite numbers (in its "
                         "pixel data, or once scaled by its Rescale Slope and Intercept) or are beyond the viewer's "
                         "range; check the export.")
    centre, width = window_defaults(ds, values)
    values = np.asarray(square_pixels(ds, Image.fromarray(values, mode="F")))  # as read_dicom's image
    return FrameValues(values, centre, width, photometric == "MONOCHROME1")


class SeriesSlice(NamedTuple):
    series: str  # SeriesInstanceUID: only for grouping, never shown
    instance: int | None  # InstanceNumber
    position: float | None  # ImagePositionPatient along the slice normal (from ImageOrientationPatient), in mm


def series_slice(data: bytes, name: str) -> SeriesSlice | None:
    """A single-frame DICOM's series and its place in it, from the header (read_header: its pixel data neither
    read nor inflated); None for JPEG/PNG, a multi-frame file (a study of its own), a file without SeriesInstanceUID and
    an unreadable one (its decoding then says why)."""
    if not data or not looks_like_dicom(data, name):
        return None
    try:
        ds = read_header(data, name)
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        series = str(ds.get("SeriesInstanceUID", "") or "")
        if n_frames != 1 or not series:
            return None
        instance = ds.get("InstanceNumber")
        return SeriesSlice(series, int(instance) if instance not in (None, "") else None,
                           _along_normal(_few(ds, "ImagePositionPatient", 3), _few(ds, "ImageOrientationPatient", 6)))
    except Exception:  # noqa: BLE001 - any unreadable header: a case of its own, whose decoding reports it
        return None


def _few(ds, keyword: str, count: int):
    """ds's `keyword` value, or None where its raw bytes hold more than `count` decimal strings (16 bytes each and a
    backslash, PS3.5 6.2): series_groups reads every slice on every rerun, and pydicom converting 64 KB of values
    (the most brainclf.input.dicom_elements lets through) costs ~60 ms a slice, for a value that is no position."""
    elem = ds.get_item(keyword)
    raw = getattr(elem, "value", None)
    if isinstance(raw, (bytes, str)) and len(raw) > 17 * count:
        return None
    return ds.get(keyword)


def _along_normal(position, orientation) -> float | None:
    try:
        orientation, position = np.asarray(orientation, float), np.asarray(position, float)
        if orientation.shape != (6,) or position.shape != (3,):
            return None
        value = float(np.dot(np.cross(orientation[:3], orientation[3:]), position))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def series_groups(uploads: list[tuple[str, bytes]]) -> list[list[int]]:
    """The uploads (name, bytes) as groups of their indices, in upload order: two or more single-frame DICOM slices
    of one series (same SeriesInstanceUID) are one group, read as a study like a multi-frame file, ordered by
    ImagePositionPatient along the slice normal when every slice has it, else by InstanceNumber when every slice
    has it, else as uploaded; a series over limits.MAX_STACK_FRAMES slices is cut into parts of at most that
    many, and the same bytes twice are one slice. Every other upload is a group of its own."""
    slices = [series_slice(data, name) for name, data in uploads]
    members: dict[str, list[int]] = {}
    seen: set[bytes] = set()
    for i, s in enumerate(slices):
        if s is not None and uploads[i][1] not in seen:
            seen.add(uploads[i][1])
            members.setdefault(s.series, []).append(i)
    groups: list[list[int]] = []
    for i, s in enumerate(slices):
        group = members.get(s.series, []) if s is not None else []
        if len(group) < 2:
            groups.append([i])
        elif group[0] == i:  # the series sits where its first slice was uploaded
            ordered = _in_series_order(group, slices)
            groups += [ordered[k:k + limits.MAX_STACK_FRAMES] for k in range(0, len(ordered), limits.MAX_STACK_FRAMES)]
    return groups


def _in_series_order(group: list[int], slices: list[SeriesSlice]) -> list[int]:
    if all(slices[i].position is not None for i in group):
        return sorted(group, key=lambda i: (slices[i].position, i))
    if all(slices[i].instance is not None for i in group):
        return sorted(group, key=lambda i: (slices[i].instance, i))
    return group
