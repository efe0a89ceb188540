"""Fuzzing the input path with hypothesis: arbitrary bytes may only fail with brainclf's own errors, and
any array PIL can represent becomes a valid model input."""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra import numpy as hnp
from PIL import Image

from brainclf.errors import BrainclfError, ImageError
from brainclf.input import InputContract, decode_image, load_model_input, read_dicom, to_model_input

# Hypothesis caches constants under ./.hypothesis/ while collecting (before any fixture runs): keep that out of
# the repo. derandomize: the same examples on every run (no flaky CI); database=None: nothing written into the repo.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="brainclf-hypothesis-"))
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
CONTRACTS = (InputContract(size=32, channels=1), InputContract(size=24, channels=3),
             InputContract(size=32, channels=1, crop="head", intensity="head-p99"),
             InputContract(size=24, channels=3, crop="head", intensity="head-p99"))

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"
DICOM = b"\0" * 128 + b"DICM"
# A PNG signature + IHDR chunk start and a JFIF header, so the decoders go further than the magic check.
PNG_IHDR = PNG + b"\x00\x00\x00\x0dIHDR"
JPEG_JFIF = JPEG + b"\xe0\x00\x10JFIF\x00"
# DICOM preamble + a file meta group length element, so pydicom starts parsing data elements.
DICOM_META = DICOM + b"\x02\x00\x00\x00UL\x04\x00"

# Minimal inputs that make pydicom raise something other than InvalidDicomError (found by this fuzzing).
DICOM_ESCAPES = {
    "wrong value length in file meta (BytesLengthException)": DICOM_META + b"\xb3",
    "unknown VR in file meta (NotImplementedError)": DICOM + b"\x02\x00\x00\x00AU\x00\x00",
    "truncated element (struct.error)": DICOM_META + b"\x10\x00\x00\x00\x02\x00\x01\x00OB\x00\x00\x02",
}

def with_prefix(prefixes):
    return st.builds(lambda prefix, tail: prefix + tail, st.sampled_from(prefixes), st.binary(max_size=2048))


image_bytes = st.one_of(st.binary(max_size=2048),
                        with_prefix([PNG, JPEG, PNG_IHDR, JPEG_JFIF, b"%PDF-1.4", b"GIF89a", b"BM", b"II*\x00"]))
dicom_bytes = st.one_of(st.binary(max_size=2048), with_prefix([DICOM, DICOM_META]))
IMAGE_NAMES = st.sampled_from(["upload.png", "scan.jpg", "file"])


def only_brainclf_errors(fn, *args, **kwargs):
    """Call fn; any exception other than a BrainclfError fails the test (with the exception shown)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except BrainclfError as e:
            assert str(e), "a BrainclfError must carry a message"
            return None


def check_model_input(x: np.ndarray, contract: InputContract) -> None:
    assert x.shape == contract.shape
    assert x.dtype == np.float32
    assert not np.isnan(x).any()
    assert x.min() >= 0.0 and x.max() <= 1.0


# --- random bytes: JPEG / PNG / other -------------------------------------------------------------------

@FUZZ
@given(data=image_bytes, name=IMAGE_NAMES)
def test_decode_image_random_bytes(data, name):
    img = only_brainclf_errors(decode_image, data, name=name)
    if img is not None:
        assert isinstance(img, Image.Image)
        assert min(img.size) >= 1


@FUZZ
@given(data=image_bytes, contract=st.sampled_from(CONTRACTS))
def test_load_model_input_random_bytes(data, contract):
    x = only_brainclf_errors(load_model_input, data, contract, name="upload")
    if x is not None:
        check_model_input(x, contract)


@FUZZ
@given(data=image_bytes)
def test_decode_image_from_random_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "upload.png"
    path.write_bytes(data)
    only_brainclf_errors(decode_image, path)


# --- random bytes: DICOM ----------------------------------------------------------------------------------

@FUZZ
@given(data=dicom_bytes)
@example(data=DICOM_META + b"\xb3")
def test_read_dicom_random_bytes(data):
    out = only_brainclf_errors(read_dicom, data, name="slice.dcm")
    if out is not None:
        assert out.image.mode in ("L", "RGB")


@FUZZ
@given(data=dicom_bytes, contract=st.sampled_from(CONTRACTS))
@example(data=DICOM_META + b"\xb3", contract=CONTRACTS[0])
def test_load_model_input_random_dicom_bytes(data, contract):
    x = only_brainclf_errors(load_model_input, data, contract, name="slice.dcm")
    if x is not None:
        check_model_input(x, contract)


def minimal_mr_dicom() -> bytes:
    """A valid 8x8 8-bit MR slice, explicit VR little endian (test_dicom's builder)."""
    from test_dicom import make_dicom

    return make_dicom(np.arange(64, dtype=np.uint8).reshape(8, 8), bits=8)


def test_minimal_dicom_reads():
    assert read_dicom(minimal_mr_dicom()).image.size == (8, 8)


def corrupted_dicoms() -> dict[str, bytes]:
    good = minimal_mr_dicom()
    modality, rows = b"\x08\x00\x60\x00CS", b"\x28\x00\x10\x00US"
    assert modality in good and rows + b"\x02\x00\x08\x00" in good
    return {
        **DICOM_ESCAPES,
        "bad VR of Modality (NotImplementedError in ds.get)": good.replace(modality, modality[:4] + b"\x43\xb5"),
        "bad VR of Rows (NotImplementedError in ds.get)": good.replace(rows, rows[:4] + b"\x55\xbc"),
        "wrong length of Rows (BytesLengthException in ds.get)":
            good.replace(rows + b"\x02\x00\x08\x00", rows + b"\x03\x00\x08\x00\x00"),
    }


@pytest.mark.parametrize("case", sorted(corrupted_dicoms()))
def test_corrupt_dicom_raises_image_error(case):
    data = corrupted_dicoms()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageError):
            read_dicom(data, name="slice.dcm")
        with pytest.raises(ImageError):
            decode_image(data, name="slice.dcm")


# --- random arrays → PIL → to_model_input -----------------------------------------------------------------

def array_shapes():
    side = st.integers(1, 64)
    return st.one_of(st.tuples(side, side), st.tuples(side, side, st.sampled_from([1, 3, 4])))


arrays = st.sampled_from([np.uint8, np.uint16, np.float32]).flatmap(
    lambda dtype: hnp.arrays(dtype=dtype, shape=array_shapes()))


@FUZZ
@given(arr=arrays, contract=st.sampled_from(CONTRACTS))
def test_to_model_input_any_pil_image(arr, contract):
    try:
        img = Image.fromarray(arr)
    except (TypeError, ValueError, KeyError):
        img = None  # a dtype / channel combination PIL cannot represent (uint16 RGB, float RGB, (h, w, 1), ...)
    assume(img is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN / inf float images warn on the cast to 8 bits
        x = to_model_input(img, contract)
    check_model_input(x, contract)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_to_model_input_nonfinite_float_image(contract):
    arr = np.array([[np.nan, 1.0], [np.inf, -np.inf]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_model_input(to_model_input(Image.fromarray(arr), contract), contract)


@pytest.mark.parametrize("dtype,shape,mode", [
    (np.uint8, (7, 50), "L"), (np.uint8, (50, 7, 3), "RGB"), (np.uint8, (9, 9, 4), "RGBA"),
    (np.uint16, (33, 2), "I;16"), (np.float32, (1, 1), "F"), (np.float32, (64, 64), "F"),
])
@pytest.mark.parametrize("contract", CONTRACTS)
def test_every_representable_mode_becomes_a_model_input(dtype, shape, mode, contract):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    for arr in (np.zeros(shape, dtype), np.full(shape, info.max, dtype),
                (rng.random(shape) * (1e6 if dtype == np.float32 else info.max)).astype(dtype)):
        img = Image.fromarray(arr)
        assert img.mode == mode
        check_model_input(to_model_input(img, contract), contract)
