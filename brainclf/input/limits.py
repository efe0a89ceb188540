"""Every input limit in one place, each checked from a header or a size *before* the expensive step.

No third-party imports: the app, the CLI and the decoders all read their limits from here, and the rule for
model names is the same for training and for upload. Memory targets behind the numbers: a whole CLI
process (TensorFlow alone is ~0.7 GB) stays under ~1.5 GB on any input, and a refused input is refused in
well under 20 s.
"""

from __future__ import annotations

from ..errors import ConfigError, ImageError

MiB = 1024 * 1024


def size_text(n: float) -> str:
    """A byte count as messages show it: '950 bytes', '12.5 KB', '300 MB', '1.2 GB' (1 MB = 1024 x 1024 bytes,
    as Streamlit counts server.maxUploadSize)."""
    for unit, scale in (("GB", 1024 * MiB), ("MB", MiB), ("KB", 1024)):
        if n >= scale:
            v = n / scale
            return f"{v:,.0f} {unit}" if v >= 100 or v == int(v) else f"{v:,.1f} {unit}"
    return f"{int(n):,} bytes"

# ---- images (JPEG/PNG via Pillow) ---------------------------------------------------------------------------
# A slice needs some pixels to classify: 1x1 or 8x8 "images" are refused, not blown up into a guess (and a
# head box smaller than this is not a head: brainclf.input.framing).
MIN_SIDE = 16
# Largest image (width x height) we agree to decode, from the header, before any pixel is decoded. 50 MP
# is ~7000x7000, far above any MRI slice (256-1024 px a side).
MAX_PIXELS = 50_000_000
# Memory to decode one image and bring it to 8 bits, from the header: width x height x the bytes a pixel
# of its mode costs (RASTER_BYTES_PER_PIXEL, plus FLOAT_WORK_BYTES_PER_PIXEL for modes converted through
# float64). 200 MiB covers what the largest 8-bit image MAX_PIXELS already allows costs in Pillow (RGB is
# stored as 4 bytes a pixel: 50 MP x 4 = 191 MiB), so 8-bit images keep their limit, and a 16-bit or float
# image may not cost more than that (~2800x2800 at 16 bits): a 95 KB 7000x7000 16-bit PNG of zeros needs
# ~1.2 GiB (1.9 GB peak for the whole process before this limit).
MAX_DECODE_BYTES = 200 * MiB
# The black square a slice is padded to before resizing (preprocess.pad_to_square) is at most this large: a
# long strip within MAX_PIXELS (31600x1580, aspect 20) padded at full size needs a 31600x31600 canvas, 1 GB in
# grayscale and 4 GB in RGB. Anything larger is shrunk by a whole factor first (Image.reduce); every slice whose
# longer side is up to 8,192 px (in RGB, 4 bytes a pixel: 4,096) is padded exactly as before.
MAX_PAD_CANVAS_BYTES = 64 * MiB
# Bytes per pixel of each Pillow mode once decoded (Pillow keeps 3- and 2-band images in 4 bytes).
RASTER_BYTES_PER_PIXEL = {
    "1": 1, "L": 1, "P": 1,
    "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
    "I": 4, "F": 4,
    "LA": 4, "La": 4, "PA": 4, "RGB": 4, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "YCbCr": 4, "LAB": 4,
    "HSV": 4,
}
UNKNOWN_MODE_BYTES_PER_PIXEL = 4
# Modes that reach 8 bits through a float64 min-max stretch (preprocess.to_8bit): the float copy, the
# shifted copy and the rounded copy are alive at once, 3 x 8 bytes a pixel.
FLOAT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
FLOAT_WORK_BYTES_PER_PIXEL = 24
# Modes with alpha (or a palette, which may hold it) are composited over black on their way to 8 bits
# (preprocess.to_8bit): a black canvas pasted onto through the alpha, after a palette or premultiplied image is
# expanded to RGBA / LA. Left out of the estimate, a 47 KB 7000x7000 palette PNG took ~800 MB past the budget.
ALPHA_WORK_BYTES_PER_PIXEL = {"P": 8, "PA": 8, "RGBa": 8, "RGBA": 4, "La": 6, "LA": 2}


# A progressive JPEG is decoded through a whole-image buffer of DCT coefficients (64 of 2 bytes per 8x8 block
# and component) before any pixel is written: 2 bytes a pixel for each of its components.
PROGRESSIVE_JPEG_BYTES_PER_PIXEL_AND_COMPONENT = 2
JPEG_COMPONENTS = {"L": 1, "RGB": 3, "CMYK": 4}  # Pillow's JPEG modes; YCbCr files open as RGB
# JPEG scans: encoders write 1 (baseline) or about 10 (progressive); each is a pass over the whole image
# (brainclf.input.jpeg), so thousands of tiny scans in a small file cost minutes of CPU.
MAX_JPEG_SCANS = 100
# Marker segments (APPn, comments, tables, scans) in a JPEG, and chunks other than image data in a PNG: real files
# hold a few dozen. Pillow parses and keeps each one in Python as it opens the file: 12.5 million empty APP1
# segments (48 MB) took 22 s and 1.6 GB, 4.3 million private PNG chunks 12 s (brainclf.input.jpeg, .png).
MAX_JPEG_SEGMENTS = 5_000
MAX_PNG_CHUNKS = 5_000
MAX_J2K_TILES = 1_024  # tiles of a JPEG 2000 frame (brainclf.input.dicom_frames.j2k_size): encoders write 1 to ~100


def raster_decode_bytes(width: int, height: int, mode: str, progressive_jpeg: bool = False) -> int:
    """Memory (bytes) to decode an image of this header size and mode and convert it to 8 bits."""
    per_pixel = RASTER_BYTES_PER_PIXEL.get(mode, UNKNOWN_MODE_BYTES_PER_PIXEL)
    if mode in FLOAT_MODES:
        per_pixel += FLOAT_WORK_BYTES_PER_PIXEL
    per_pixel += ALPHA_WORK_BYTES_PER_PIXEL.get(mode, 0)
    if progressive_jpeg:
        per_pixel += PROGRESSIVE_JPEG_BYTES_PER_PIXEL_AND_COMPONENT * JPEG_COMPONENTS.get(mode, 4)
    return width * height * per_pixel


# Largest input file read from disk (CLI, folder prediction): the whole file is held in memory to decode
# it, and no slice, nor a DICOM within MAX_DICOM_PIXEL_BYTES, comes near it.
MAX_FILE_BYTES = 300 * MiB

# ---- DICOM --------------------------------------------------------------------------------------------------
# Per frame, DICOM has the image limits above (MAX_PIXELS, and MAX_DECODE_BYTES with the float work below); per
# file, MAX_DICOM_PIXEL_BYTES. All are checked on the header, and a compressed frame's codestream must declare
# the header's size (brainclf.input.dicom_frames) before a decoder allocates it.
# All frames together, as stored once decoded (frames x rows x columns x samples x bytes per sample). Only
# the middle frame is decoded, but an uncompressed file holds all of them in memory and a Deflate file
# must be inflated whole. 256 MiB fits an enhanced MR series of 500 frames of 512x512 16-bit (250 MiB);
# a 1 MB Deflate file of 500 frames of 1024x1024 (1000 MiB inflated) took 3.7 GB and 13 s before this limit.
MAX_DICOM_PIXEL_BYTES = 256 * MiB
# One frame on its way to 8 bits: the stored samples plus the float64 copies of the rescale / window
# arithmetic (dicom._to_8bit: ~4 x 8 bytes a sample alive at once). Compared with MAX_DECODE_BYTES.
DICOM_FLOAT_WORK_BYTES_PER_SAMPLE = 32
# A Deflate file is inflated in two steps: at most this much to read its header (enhanced MR per-frame
# functional groups take ~2 KB a frame), then exactly what the header declares plus the slack below for
# elements after the pixel data. Anything longer is refused without inflating the rest.
MAX_DICOM_HEADER_BYTES = 16 * MiB
DICOM_TRAILING_BYTES = 1 * MiB
# Data elements pydicom parses when it reads a file, each into a Python object (brainclf.input.dicom_frames counts
# them from the bytes first): real MR files hold 100-300 at their top level, and an enhanced MR's per-frame
# functional groups a few hundred a frame inside sequences. A 49 MB file of 6 million empty private elements took
# tens of seconds and GBs to read; 500,000 elements take pydicom ~2 s and ~60 MB.
MAX_DICOM_ELEMENTS = 10_000  # at the top level of the dataset (or of the file meta)
MAX_DICOM_ALL_ELEMENTS = 500_000  # with those inside sequences

# ---- model files (.keras = zip of config.json, metadata.json, model.weights.h5) ---------------------------
# Checked from the zip directory before Keras opens the file; zipfile never inflates a member past the
# size its directory declares, so these bound what Keras can allocate.
# config.json and metadata.json are read whole and parsed as JSON (several times their size in Python
# objects); a real config is 10-500 KB.
MAX_KERAS_JSON_BYTES = 16 * MiB
# Any one member (the weights file): the largest shipped model's weights are ~5 MB; 256 MiB is ~64 M float32
# parameters, far beyond any network here.
MAX_KERAS_MEMBER_BYTES = 256 * MiB
# All members together, and how many: a .keras holds 3 files (plus assets for some layers).
MAX_KERAS_TOTAL_BYTES = 512 * MiB
MAX_KERAS_MEMBERS = 1000
# What the config may ask Keras to build, estimated from config.json before Keras reads it
# (brainclf.model.model_config): the shipped models have 0.5-1.1 M parameters (models/*.json `params`); 25 M float32
# parameters are ~100 MB of weights. A 12 KB file declaring Dense(20000) on a 20000-wide input (400 M) took
# the CLI to 8.8 GB before this limit.
MAX_MODEL_PARAMS = 25_000_000
# A declared input, per image (the card's contract allows 1024 x 1024 x 3), and any layer's output per image
# (the shipped models' largest is 80 x 80 x 24 = 154 K values; 16 M float32 values = 64 MB an image).
MAX_MODEL_INPUT_VALUES = 4 * 1024 * 1024
MAX_MODEL_LAYER_OUTPUT_VALUES = 16 * 1024 * 1024
# The app's model process (brainclf.inference.model_worker) may hold this much private writable memory (RLIMIT_DATA: the
# heap and anonymous mappings, where TensorFlow puts tensors; not the address space TensorFlow reserves, which
# RLIMIT_AS would count). Measured on 2 cores: 0.47 GB after importing Keras, 0.74 GB with the four shipped
# models loaded and 64-image Grad-CAM calls with TTA run on each; a model needing more than the cap gets a clear
# error (TensorFlow's allocation fails) and the process and the server carry on.
MODEL_PROCESS_DATA_BYTES = 4 * 1024 * MiB
# Models loaded at once in the model process (brainclf.inference.model_worker; the app caches as many). Five are
# shipped: with 4 kept, five users on five models made every call reload one (~1 s under the model lock). 0.47 GB
# after importing Keras and 0.74 GB with the four shipped models loaded (above) put a dozen near 1.3 GB of the
# 4 GiB cap; a model that does not fit gets the cap's clear error.
MODELS_KEPT = 12
# Uploaded models one account may have installed at once (an admin removes them), and the disk space an upload must
# leave free: without them one researcher's uploads of 50 MB each could fill the server's disk, and every listed
# model costs each page run its line in the picker.
MAX_UPLOADS_PER_ACCOUNT = 20
# An uploaded model's card: a card trained here is ~3 MB (its per-image rows for ~4,000 images and its file lists).
# A card is held parsed (about 7 times its bytes) in the app's caches, so a 44 MB card made up of 500,000 rows kept
# 310 MB per model a user picked: uploads are held to this, cards written here to card.MAX_CARD_BYTES.
MAX_UPLOAD_CARD_BYTES = 8 * MiB
MIN_FREE_DISK_BYTES = 1024 * MiB

# ---- app uploads --------------------------------------------------------------------------------------------
# Per file: the same number as server.maxUploadSize in .streamlit/config.toml (Streamlit counts MB as MiB),
# so a direct call refuses what the page's uploader would.
MAX_UPLOAD_FILE_BYTES = 50 * MiB
# The same in MB, for st.file_uploader(max_upload_size=...): the browser refuses to send a larger file.
MAX_UPLOAD_FILE_MB = MAX_UPLOAD_FILE_BYTES // MiB
# Files in one upload: each is decoded, classified and explained (Grad-CAM) in the same page run, so 20
# keeps one run to seconds to tens of seconds on a CPU server, and a series is better checked a few slices
# at a time anyway.
MAX_UPLOAD_FILES = 20
# Bytes one browser session may upload in total: Streamlit holds each uploaded file in server memory until it
# is removed from the uploader or the session ends, and the page decodes every file it holds on each run, so
# 200 MiB a session (thousands of typical 50-500 KB slices, or four files at the per-file limit) bounds both
# what one session can hold and the decoding it can ask for. The server's upload gate holds each user to the same
# 200 MiB over all of their browser sessions (brainclf.serving.upload_gate): ten tabs are not ten budgets.
MAX_SESSION_UPLOAD_BYTES = 200 * MiB
# Bytes one browser session's case book may hold in results (each slice's model input and Grad-CAM map, float32:
# 200 KiB a slice for the shipped 160 px models). Uploaded bytes do not bound them: a 17 KB 64-frame DICOM is
# 64 slices, 12.5 MiB of results, so 50 of them took 625 MiB a model. 128 MiB is ~650 slices at 160 px, ten
# 64-slice studies on screen at once; older cases' results give way first (brainclf.presentation.cases.CaseBook).
MAX_SESSION_RESULT_BYTES = 128 * MiB
# Frames of one multi-frame DICOM read as a study on the Predict page: each is classified and explained, so
# 64 (a typical brain series) keeps a study to one page run of tens of seconds; more is refused, not truncated.
MAX_STACK_FRAMES = 64
# The full-size viewer shows the original resolution up to this side (px); a larger image is shown scaled
# down to it, so the picture sent to the browser stays a few MB whatever MAX_PIXELS allows.
MAX_VIEWER_SIDE = 2048


def check_upload_batch(sizes: list[int], session_bytes_so_far: int = 0) -> int:
    """Refuse an upload (ImageError) with too many files, a file over the per-file limit, or one that would
    take the session over its byte budget; call it before reading or decoding any of the files. Returns the
    session's total with this batch.

    `sizes`: the byte size of every file in this upload (all of them are processed in one run);
    `session_bytes_so_far`: what the session uploaded before and is not among them (the caller keeps it, e.g.
    in the session state, so that a file shown again on the next run is not counted twice)."""
    sizes = [int(s) for s in sizes]
    if len(sizes) > MAX_UPLOAD_FILES:
        raise ImageError(f"{len(sizes)} files in one upload; at most {MAX_UPLOAD_FILES} are processed at a "
                         "time. Upload them in smaller groups.")
    for k, size in enumerate(sizes):
        if size < 0:
            raise ConfigError(f"File {k + 1} has a negative size ({size}).")
        if size > MAX_UPLOAD_FILE_BYTES:
            raise ImageError(f"File {k + 1} is {size_text(size)}, above the limit of "
                             f"{size_text(MAX_UPLOAD_FILE_BYTES)} a file.")
    total = int(session_bytes_so_far) + sum(sizes)
    if total > MAX_SESSION_UPLOAD_BYTES:
        raise ImageError(f"This upload ({size_text(sum(sizes))}) would take this session to {size_text(total)}, "
                         f"above the limit of {size_text(MAX_SESSION_UPLOAD_BYTES)} a session holds at once. "
                         "Remove some files from the upload box; the cases already analysed stay in this "
                         "session's history while it has room (the newest are kept).")
    return total


# ---- names --------------------------------------------------------------------------------------------------
# The one rule for a model name, in training and in upload: it becomes a file name (models/<name>.keras)
# and a run folder (runs/<name>), so only ASCII letters, digits, '-' and '_' (no separators, dots, spaces or
# look-alike letters such as the Cyrillic 'е' in 'dеfault'), and at most 64 of them (file-system and
# display limits).
MODEL_NAME_MAX = 64
MODEL_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def validate_model_name(name: str, error: type[Exception] = ConfigError) -> str:
    """Return `name` if it is 1-64 ASCII letters, digits, '-' or '_'; raise `error` saying what is wrong."""
    if not isinstance(name, str):
        raise error(f"A model name must be text, got {type(name).__name__}.")
    rule = f"a model name must be 1-{MODEL_NAME_MAX} ASCII letters, digits, '-' or '_'"
    shown = repr(name if len(name) <= 80 else name[:40] + "..." + name[-20:])
    if not name:
        raise error(f"The model name is empty: {rule}.")
    if len(name) > MODEL_NAME_MAX:
        raise error(f"Model name {shown} has {len(name)} characters: {rule}.")
    bad = next((c for c in name if c not in MODEL_NAME_CHARS), None)
    if bad is not None:
        what = f"non-ASCII character {bad!r} (U+{ord(bad):04X})" if ord(bad) > 127 else f"character {bad!r}"
        raise error(f"Model name {shown} contains the {what}: {rule}.")
    return name


def check_upload_session(sizes_by_file: dict[str, int]) -> None:
    """check_upload_batch for the files an upload box holds now (file id -> size): what the session holds at once.
    Files removed from the box do not count: the case book keeps older cases within its own byte bound
    (brainclf.presentation.cases.CaseBook), so a session may go through any number of studies, one box at a time."""
    check_upload_batch(list(sizes_by_file.values()), 0)


# The refer rule's target (an admin setting): below 80 % accepted accuracy an answer is not worth giving.
REFER_TARGET_RANGE = (0.80, 0.9999)


def check_refer_target(target) -> float:
    """`target` as a float in REFER_TARGET_RANGE, else ValueError saying what is allowed (a string or a bool,
    e.g. target_accuracy = "0.98" in a settings file, is refused rather than read)."""
    lo, hi = REFER_TARGET_RANGE
    if not lo <= _number(target) <= hi:
        raise ValueError(f"the refer target must be an accepted accuracy between {lo} and {hi}, got "
                         f"{str(target)[:40]!r}")
    return float(target)


def _number(value) -> float:
    """`value` as a float, NaN for a bool, a non-number or an integer too large for a float (then out of any range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    try:
        return float(value)
    except OverflowError:
        return float("nan")


# The confidence of the lower bound the refer rule may ask to reach the target (an admin setting): below 50 % the
# bound is above the share seen and promises more than was measured.
REFER_CONFIDENCE_RANGE = (0.5, 0.999)


def check_refer_confidence(confidence) -> float:
    """`confidence` as a float in REFER_CONFIDENCE_RANGE, else ValueError saying what is allowed."""
    lo, hi = REFER_CONFIDENCE_RANGE
    if not lo <= _number(confidence) <= hi:
        raise ValueError(f"the refer confidence must be a probability between {lo} and {hi}, got "
                         f"{str(confidence)[:40]!r}")
    return float(confidence)
