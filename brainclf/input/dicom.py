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
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import ImageError
from . import limits
from .dicom_frames import check_encoded_frame

DEFLATED_TS = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the whole dataset is deflated
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float Pixel Data, Double Float Pixel Data

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


def apply_window(pixels: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Grey values (after the modality LUT) through a linear window: centre - width/2 is black, centre + width/2
    white, 8 bits (uint8, same shape). A width below 1 is taken as 1 (DICOM PS3.3 C.11.2.1.2)."""
    width = max(float(width), 1.0)
    return _to_8bit(pixels, float(centre) - width / 2, float(centre) + width / 2)


def window_defaults(ds, values: np.ndarray) -> tuple[float, float]:
    """(centre, width): the file's first WindowCenter/WindowWidth preset, else (none, or one that is not a finite
    number: a display preset, not the data) the frame's full range."""
    if "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        if np.isfinite(centre) and np.isfinite(width):
            return centre, width
    lo, hi = float(np.min(values)), float(np.max(values))
    return (lo + hi) / 2, max(hi - lo, 1.0)


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


def _check_pixel_budget(ds, name: str) -> int:
    """Refuse, from the header alone, pixel data too large to hold or a frame too large to decode; return the
    bytes all frames take once decoded (frames x rows x columns x samples x bytes per sample)."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    samples = max(int(ds.get("SamplesPerPixel", 1) or 1), 1)
    per_sample = max((int(ds.get("BitsAllocated", 8) or 8) + 7) // 8, 1)
    if rows * cols > limits.MAX_PIXELS:
        raise ImageError(f"{name}: DICOM frame is {cols}x{rows} pixels, above the limit of {limits.MAX_PIXELS:,}; "
                         "refused before decoding.")
    total = frames * rows * cols * samples * per_sample
    if total > limits.MAX_DICOM_PIXEL_BYTES:
        raise ImageError(f"{name}: DICOM pixel data is {frames} frame(s) of {cols}x{rows} x {samples} sample(s) x "
                         f"{per_sample} byte(s) = {limits.size_text(total)} once decoded, above the limit of "
                         f"{limits.size_text(limits.MAX_DICOM_PIXEL_BYTES)}; refused before decoding. Export "
                         "the slice (or a few frames) on its own.")
    need = rows * cols * samples * (per_sample + limits.DICOM_FLOAT_WORK_BYTES_PER_SAMPLE)
    if need > limits.MAX_DECODE_BYTES:
        raise ImageError(f"{name}: one {cols}x{rows} DICOM frame needs ~{limits.size_text(need)} to decode and "
                         f"window, above the limit of {limits.size_text(limits.MAX_DECODE_BYTES)}; refused "
                         "before decoding.")
    return total


def _file_meta_end(data: bytes) -> tuple[int, str]:
    """(offset where the dataset starts, transfer syntax UID) of a Part 10 file, from its group 0002 elements
    (Explicit VR Little Endian by the standard); (0, '') when there is no 'DICM' file meta to read."""
    if data[128:132] != b"DICM":
        return 0, ""
    pos, ts = 132, ""
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"):
            start, length = pos + 12, int.from_bytes(data[pos + 8:pos + 12], "little")
        else:
            start, length = pos + 8, int.from_bytes(data[pos + 6:pos + 8], "little")
        if data[pos + 2:pos + 4] == b"\x10\x00":  # (0002,0010) Transfer Syntax UID
            ts = data[start:start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return pos, ts


def _inflate_deflated(data: bytes, name: str) -> bytes:
    """A Deflate DICOM re-encoded as the same file uncompressed (Explicit VR Little Endian); any other file
    as it is. Inflates at most MAX_DICOM_HEADER_BYTES to read the header, checks the pixel budget on it, then
    at most what that header declares: a deflate bomb is refused without inflating it (pydicom would inflate
    the whole stream in one call, whatever its size)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    meta_end, ts = _file_meta_end(data)
    if ts != DEFLATED_TS:
        return data
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        head = inflater.decompress(memoryview(data)[meta_end:], limits.MAX_DICOM_HEADER_BYTES)
        f = io.BytesIO(head)
        header = read_dataset(f, is_implicit_VR=False, is_little_endian=True,
                              stop_when=lambda tag, vr, length: tag in PIXEL_TAGS)
        at = f.tell()
        group, element = struct.unpack("<HH", head[at:at + 4]) if len(head) >= at + 4 else (0, 0)
        if (group << 16 | element) in PIXEL_TAGS:
            limit = at + 12 + _check_pixel_budget(header, name) + limits.DICOM_TRAILING_BYTES
        elif inflater.eof:
            limit = len(head)  # the whole dataset is in: no pixel data (reported as such below)
        elif len(head) < limits.MAX_DICOM_HEADER_BYTES:  # all the input inflated, yet the stream did not end
            raise ImageError(f"{name}: the Deflate-compressed DICOM data is truncated.")
        else:
            raise ImageError(f"{name}: the Deflate-compressed DICOM header is larger than "
                             f"{limits.size_text(limits.MAX_DICOM_HEADER_BYTES)} before its pixel data; refused "
                             "before inflating the rest.")
        rest = inflater.decompress(inflater.unconsumed_tail, max(limit - len(head), 1))
        if not inflater.eof:
            if inflater.unconsumed_tail or inflater.decompress(b"", 1):
                raise ImageError(f"{name}: the Deflate-compressed DICOM data inflates to more than its header "
                                 f"declares ({limits.size_text(limit)}); refused without inflating the rest.")
            raise ImageError(f"{name}: the Deflate-compressed DICOM data is truncated.")
    except zlib.error:
        raise ImageError(f"{name}: the Deflate-compressed DICOM data is corrupt.") from None
    meta = FileMetaDataset(read_dataset(io.BytesIO(data[132:meta_end]), is_implicit_VR=False, is_little_endian=True))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    write_file_meta_info(out, meta, enforce_standard=False)
    return b"".join((data[:132], out.getvalue(), head, rest))


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
    return DicomSlice(_slice_image(ds, decode_frame(ds, frame, n_frames, name), name), frame, n_frames,
                      _safe_metadata(ds))


def open_frame(data: bytes, name: str, frame: int | None):
    """(dataset, number of frames, the frame to read: default the middle one), every limit checked on the header
    and on the chosen frame's codestream; nothing decoded yet."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes).")
    data = _inflate_deflated(data, name)  # bounded by the header, before pydicom would inflate it whole
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
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    _check_pixel_budget(ds, name)
    if n_frames > 1:
        frame = n_frames // 2 if frame is None else frame
        if not 0 <= frame < n_frames:
            raise ImageError(f"{name}: frame {frame} requested but the file has {n_frames} frames (0-{n_frames - 1}).")
    else:
        frame = 0
    check_encoded_frame(ds, frame, n_frames, name)  # the codestream's own size, before a decoder allocates it
    return ds, n_frames, frame


def decode_frame(ds, frame: int, n_frames: int, name: str):
    """The pixel array of the frame the model reads (pydicom decodes one frame of a multi-frame file by index)."""
    from pydicom.pixels import pixel_array

    try:
        pixels = pixel_array(ds, index=frame if n_frames > 1 else None)
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
    return pixels


def _slice_image(ds, pixels, name: str) -> Image.Image:
    """Pixels as an 8-bit image: RGB for colour, else grayscale through the modality LUT and the file's window
    (or VOI LUT), inverted for MONOCHROME1."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    is_colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1
    if is_colour:
        if photometric.startswith("YBR"):
            pixels = convert_color_space(pixels, photometric, "RGB")
        return Image.fromarray(_to_8bit(pixels, 0, float(2 ** int(ds.get("BitsStored", 8)) - 1)), mode="RGB")
    values = apply_modality_lut(pixels, ds)
    if not np.isfinite(values).all():
        raise ImageError(f"{name}: the DICOM's Rescale Slope or Intercept is not a finite number, so its grey values "
                         "cannot be read; check the export.")
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
