"""Decoding and the one preprocessing function shared by training, evaluation and prediction.

    file bytes --decode_image--> PIL image --to_model_input(contract)--> float32 HxWxC in [0, 1]

`to_model_input` is the only place where an image becomes a model input, so a model sees in the app
exactly what it saw in training.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError
from .dicom import looks_like_dicom, read_dicom
from .dicom_stack import check_stack, frame_count
from .framing import head_box, head_p99_scale
from .headers import check_header_segments
from .limits import (
    MAX_DECODE_BYTES,
    MAX_PAD_CANVAS_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    RASTER_BYTES_PER_PIXEL,
    raster_decode_bytes,
    size_text,
)
from .reading import read_image_file

# MAX_PIXELS (brainclf.input.limits) is the largest image (width x height) we agree to decode, checked from the
# header *before* the pixels are decoded, so a decompression bomb is refused without allocating its memory;
# MAX_DECODE_BYTES bounds the memory by bit depth as well (a 16-bit image costs far more per pixel).
# Extremely elongated images (a 1x5000 strip) are not slices; padding them to square would leave a
# model input that is almost all padding.
MAX_ASPECT_RATIO = 20.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# The only formats Pillow may open, whatever the file's name: every other plugin (TIFF, WebP, GIF, BMP, SGI, DDS,
# PCX, EPS through Ghostscript, ...) is attack surface no MRI slice needs. DICOM goes through pydicom.
RASTER_FORMATS = ("JPEG", "PNG")
ACCEPTED_TEXT = "JPEG, PNG or DICOM"
# Signatures of formats that are refused by name, so the message says what the file is.
OTHER_FORMATS = ((b"%PDF", "a PDF document"), (b"%!PS", "a PostScript/EPS document"),
                 (b"\xc5\xd0\xd3\xc6", "an EPS document"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
                 (b"GIF8", "a GIF image"), (b"BM", "a BMP image"), (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
                 (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"), (b"DDS ", "a DDS image"), (b"8BPS", "a PSD image"),
                 (b"\x00\x00\x01\x00", "an ICO image"), (b"\x01\xda", "an SGI image"))
UPLOAD_SUFFIXES = (*IMAGE_SUFFIXES, ".dcm", ".dicom")


@dataclass(frozen=True)
class InputContract:
    """What a model expects: stored in its card so preprocessing can never drift from training."""

    size: int = 128
    channels: int = 1
    padding: str = "centre-black"  # centred pad to square with black (0), then resize
    resample: str = "bilinear"
    # "head": crop to the head's bounding box before padding, so the head fills the frame whatever the
    # source's field of view (web images and screenshots frame the same anatomy very differently).
    crop: str = "none"
    # "head-p99": scale so the head's 99th intensity percentile is white, whatever the source's windowing.
    intensity: str = "none"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InputContract:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def describe(self) -> str:
        """In words, for the pages: '160×160 grayscale, cropped to the head, padded to square, ...'."""
        steps = [f"{self.size}×{self.size} {'grayscale' if self.channels == 1 else 'RGB'}"]
        if self.crop == "head":
            steps.append("cropped to the head")
        steps.append("padded to square")
        if self.intensity == "head-p99":
            steps.append("head intensities scaled to its 99th percentile")
        return ", ".join(steps)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.channels)


def decode_image(source: bytes | str | Path, name: str | None = None) -> Image.Image:
    """Decode JPEG/PNG/DICOM bytes or a file into a fully loaded PIL image, honouring EXIF orientation.

    DICOM (by its 'DICM' marker or a .dcm name) goes through brainclf.input.dicom (rescale, window); a multi-frame
    one is refused (a study: decode_upload reads its frames one by one). Raises ImageError with a specific message
    for empty, non-image, truncated, corrupt or too-large inputs. `name` is only used in messages.
    """
    if isinstance(source, (str, Path)):
        name = name or Path(source).name
        data = read_image_file(source, name)
    else:
        data = bytes(source)
    name = name or "image"
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes).")
    if looks_like_dicom(data, name):
        if (frames := frame_count(data, name)) > 1:  # as for a multi-page PNG: which frame is the slice is no guess
            raise ImageError(f"{name}: this DICOM holds {frames} frames (a study); the app's Predict page reads it "
                             "slice by slice, or export the slice you mean as its own file.")
        return _check_shape(read_dicom(data, name=name).image, name)
    return _decode_raster(data, name)


def upload_alias(name: str | None) -> str:
    """What an upload is called while it is decoded: 'upload' plus its suffix when that is one we read (DICOM is
    also told by its suffix). Error messages then never carry the user's file name, which may hold a
    patient's name or number; the page shows the name itself, beside the message."""
    suffix = Path(name or "").suffix.lower()
    return "upload" + (suffix if suffix in UPLOAD_SUFFIXES else "")


def without_alias(message: str, alias: str) -> str:
    """A decoder message with its leading 'ALIAS: ' removed."""
    return message[len(alias) + 2:] if message.startswith(alias + ": ") else message


def decode_upload(data: bytes, name: str, frame: int | None = None) -> tuple[Image.Image, dict[str, str] | None]:
    """decode_image for an upload, plus the DICOM's safe tags (None for JPEG/PNG), decoding only once. `frame`:
    one frame of a multi-frame DICOM (a study's slice); without it, a file over limits.MAX_STACK_FRAMES frames
    is refused (the page reads a multi-frame file frame by frame, as a study)."""
    if data and looks_like_dicom(data, name):
        dcm = read_dicom(data, name=name, frame=frame)
        if frame is None:
            check_stack(dcm.n_frames, name)
        return _check_shape(dcm.image, name), dcm.metadata
    return decode_image(data, name=name), None


def _refuse_other_formats(data: bytes, name: str) -> None:
    """Name the format of a file that is not JPEG, PNG or DICOM, whatever its name says (no plugin opens it)."""
    what = next((text for magic, text in OTHER_FORMATS if data.startswith(magic)), None)
    if what is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        what = "a WebP image"
    if what is not None:
        raise ImageError(f"{name}: this is {what}; only {ACCEPTED_TEXT} files are accepted.")


def _decode_raster(data: bytes, name: str) -> Image.Image:
    _refuse_other_formats(data, name)
    check_header_segments(data, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=RASTER_FORMATS)  # never any other Pillow plugin
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(
                    f"{name}: image is {w}x{h} = {w * h:,} pixels, above the limit of {MAX_PIXELS:,}; "
                    "refused before decoding."
                )
            progressive = img.format == "JPEG" and bool(img.info.get("progressive"))
            need = raster_decode_bytes(w, h, img.mode, progressive_jpeg=progressive)
            if need > MAX_DECODE_BYTES:
                raise ImageError(
                    f"{name}: a {w}x{h} {img.mode} image needs ~{size_text(need)} to decode and convert "
                    f"to 8 bits, above the limit of {size_text(MAX_DECODE_BYTES)}; refused before decoding. "
                    "Export the slice at its scanner resolution, as 8-bit greyscale without transparency."
                )
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                # Which frame would be the slice? Guessing is not safe; DICOM has a frame choice instead.
                raise ImageError(f"{name}: this {img.format or 'image'} holds {frames} frames (animated or "
                                 "multi-page); upload a single slice as JPEG/PNG, or a multi-frame DICOM.")
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image is too large to decode safely (decompression bomb guard).") from None
    except UnidentifiedImageError:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            raise ImageError(f"{name}: the PNG file is corrupt (bad header or checksum).") from None
        if data[:3] == b"\xff\xd8\xff":
            raise ImageError(f"{name}: the JPEG file is corrupt (unreadable header).") from None
        raise ImageError(f"{name}: not a recognised image; only {ACCEPTED_TEXT} files are accepted.") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error) as e:
        # Pillow's chunk readers fail with IndexError and the like (an empty iCCP chunk after the image data).
        raise ImageError(f"{name}: the image is truncated or corrupt ({e or type(e).__name__}).") from None
    try:
        ImageOps.exif_transpose(img, in_place=True)  # not a copy: the returned one doubled every decoded image
    except Exception:  # noqa: BLE001 - a broken EXIF block should not make a readable image unusable
        pass
    return _check_shape(img, name)


def _check_shape(img: Image.Image, name: str) -> Image.Image:
    w, h = img.size
    if max(w, h) / max(min(w, h), 1) > MAX_ASPECT_RATIO:
        raise ImageError(
            f"{name}: image is {w}x{h}, more elongated than {MAX_ASPECT_RATIO:g}:1; not an MRI slice."
        )
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name}: image is only {w}x{h} pixels; an MRI slice needs at least {MIN_SIDE} px a side.")
    return img


def to_8bit(img: Image.Image) -> Image.Image:
    """Any PIL mode → 'L' or 'RGB' with 8 bits per channel.

    16-bit and float images are min-max stretched (MRI intensities have no absolute scale); alpha is
    composited over black, the background of an MRI slice.
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    if mode == "1":
        return img.convert("L")
    if mode in ("P", "PA", "RGBa", "La"):
        img = img.convert("LA" if mode == "La" else "RGBA")
    if img.mode in ("RGBA", "LA"):
        # Pasted through its own alpha onto black: one canvas, not the three copies of an alpha_composite
        # (limits.ALPHA_WORK_BYTES_PER_PIXEL counts it).
        canvas = Image.new("RGB" if img.mode == "RGBA" else "L", img.size, 0)
        canvas.paste(img, mask=img)
        return canvas
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...


def pad_to_square(img: Image.Image) -> Image.Image:
    """Centre the image on a black square canvas whose side is its longer edge (no distortion); an image whose
    canvas would exceed MAX_PAD_CANVAS_BYTES is first shrunk by the smallest whole factor that fits."""
    w, h = img.size
    if w == h:
        return img
    factor = math.ceil(max(w, h) * math.sqrt(RASTER_BYTES_PER_PIXEL.get(img.mode, 4) / MAX_PAD_CANVAS_BYTES))
    if factor > 1:
        img = img.reduce(factor)
        w, h = img.size
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), 0)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def to_model_input(img: Image.Image, contract: InputContract) -> np.ndarray:
    """THE preprocessing function: PIL image → float32 array (size, size, channels) in [0, 1].

    8 bits, grayscale or RGB, [crop to the head], centred black pad to square, bilinear resize,
    [head intensity scaling]: the bracketed steps only where the model's contract asks for them.
    """
    img = to_8bit(img)
    img = img.convert("L" if contract.channels == 1 else "RGB")
    if contract.crop == "head":
        box = head_box(np.asarray(img.convert("L")))
        if box is not None:
            img = img.crop(box)
    img = pad_to_square(img)
    if img.size != (contract.size, contract.size):
        img = img.resize((contract.size, contract.size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if contract.intensity == "head-p99":
        arr = head_p99_scale(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def load_model_input(source: bytes | str | Path, contract: InputContract, name: str | None = None) -> np.ndarray:
    """decode_image + to_model_input, the path every file takes."""
    return to_model_input(decode_image(source, name=name), contract)
