"""DICOM reading: bit depths, signedness, photometric interpretations, frames, errors, and no PHI out."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, MRImageStorage, generate_uid

from brainclf.errors import ImageError
from brainclf.input import InputContract, decode_image, load_model_input, read_dicom

PHI = {"PatientName": "Doe^Jane", "PatientID": "PID-998877", "PatientBirthDate": "19700101",
       "AccessionNumber": "ACC-4455", "InstitutionName": "St Elsewhere Hospital",
       "ReferringPhysicianName": "House^Gregory", "SeriesDescription": "Jane Doe brain T1"}
PHI_STRINGS = ["Doe", "Jane", "PID-998877", "19700101", "ACC-4455", "Elsewhere", "House", "Gregory"]


def make_dicom(arr: np.ndarray, bits: int = 16, signed: bool = False, photometric: str = "MONOCHROME2",
               modality: str | None = "MR", frames: int | None = None, samples: int = 1, pixel_data: bool = True,
               transfer_syntax=ExplicitVRLittleEndian, **tags) -> bytes:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = MRImageStorage
    fm.MediaStorageSOPInstanceUID = generate_uid()
    fm.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, fm.MediaStorageSOPInstanceUID
    if modality:
        ds.Modality = modality
    for k, v in {**PHI, **tags}.items():
        setattr(ds, k, v)
    ds.SliceThickness, ds.PixelSpacing = "5.0", tags.get("PixelSpacing", ["0.5", "0.5"])
    rows, cols = arr.shape[-3:-1] if samples == 3 else arr.shape[-2:]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    if frames:
        ds.NumberOfFrames = frames
    if pixel_data:
        dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[(ds.BitsAllocated, signed)]
        ds.PixelData = arr.astype(dtype).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


RAMP = np.tile(np.arange(64), (32, 1))  # 32 rows x 64 columns, dark left → bright right


@pytest.mark.parametrize("bits,signed,scale,offset", [(8, False, 4, 0), (12, False, 60, 0), (16, False, 1000, 0),
                                                      (16, True, 500, -16000)])
def test_bit_depths_and_signedness_map_dark_to_bright(bits, signed, scale, offset):
    s = read_dicom(make_dicom(RAMP * scale + offset, bits=bits, signed=signed))
    px = np.asarray(s.image)
    assert s.image.mode == "L" and s.image.size == (64, 32)
    assert px[0, 0] == 0 and px[0, -1] == 255
    assert np.all(np.diff(px[0].astype(int)) >= 0)  # monotonic ramp survives


def test_rescale_slope_intercept_is_applied_before_the_window():
    # Stored 0..63, slope 10, intercept -100 → -100..530; window 0..400 clips the ends.
    s = read_dicom(make_dicom(RAMP, RescaleSlope="10", RescaleIntercept="-100", WindowCenter="200",
                              WindowWidth="400"))
    px = np.asarray(s.image)[0]
    assert px[10] == 0 and px[50] == 255  # value 0 and 400 → window edges
    assert 120 <= px[30] <= 135  # 200 → middle grey


@pytest.mark.parametrize("window", [("NaN", "400"), ("200", "inf")])
def test_a_window_preset_that_is_not_a_number_falls_back_to_the_full_range(window):
    centre, width = window
    px = np.asarray(read_dicom(make_dicom(RAMP, WindowCenter=centre, WindowWidth=width)).image)
    assert px[0, 0] == 0 and px[0, -1] == 255  # as without a preset, not an all-black slice


def test_a_rescale_that_is_not_a_number_is_refused():
    with pytest.raises(ImageError, match="Rescale Slope or Intercept is not a finite number"):
        read_dicom(make_dicom(RAMP, RescaleSlope="NaN", RescaleIntercept="0"), name="x.dcm")


def test_monochrome1_is_inverted():
    px = np.asarray(read_dicom(make_dicom(RAMP * 100, photometric="MONOCHROME1")).image)
    assert px[0, 0] == 255 and px[0, -1] == 0


def test_rgb_dicom():
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 0] = 200
    s = read_dicom(make_dicom(rgb, bits=8, photometric="RGB", samples=3))
    assert s.image.mode == "RGB" and np.asarray(s.image)[0, 0].tolist() == [200, 0, 0]  # 8-bit kept as is


def test_multiframe_default_middle_and_chosen_frame():
    frames = np.stack([RAMP * 0 + 10 * i for i in range(5)])  # constant frames 0, 10, 20, 30, 40
    frames[:, 0, 0], frames[:, 0, 1] = 0, 1000  # same range in each: each constant maps to its own grey
    data = make_dicom(frames, frames=5)
    s = read_dicom(data)
    assert (s.frame, s.n_frames) == (2, 5)
    assert read_dicom(data, frame=4).frame == 4
    assert np.asarray(read_dicom(data, frame=4).image)[5, 5] > np.asarray(s.image)[5, 5]
    with pytest.raises(ImageError, match="frame 9 requested but the file has 5 frames"):
        read_dicom(data, frame=9)


def test_dicom_goes_through_the_one_preprocessing_function():
    x = load_model_input(make_dicom(RAMP * 100), InputContract(size=32, channels=1), name="slice.dcm")
    assert x.shape == (32, 32, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def test_no_phi_reaches_metadata_or_messages():
    s = read_dicom(make_dicom(RAMP * 100))
    text = repr(s.metadata)
    assert s.metadata["Modality"] == "MR" and "Slice thickness (mm)" in s.metadata
    for phi in PHI_STRINGS:
        assert phi not in text
    for bad in (make_dicom(RAMP, modality="CT"), make_dicom(RAMP, pixel_data=False)):
        with pytest.raises(ImageError) as e:
            read_dicom(bad, name="upload.dcm")
        assert not any(phi in str(e.value) for phi in PHI_STRINGS)


def test_errors_are_specific():
    with pytest.raises(ImageError, match="modality is CT, not MR"):
        read_dicom(make_dicom(RAMP, modality="CT"))
    with pytest.raises(ImageError, match="no pixel data"):
        read_dicom(make_dicom(RAMP, pixel_data=False))
    with pytest.raises(ImageError, match="not a DICOM file|not a readable DICOM"):
        decode_image(b"just some text, not DICOM at all", name="fake.dcm")
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"", name="empty.dcm")


def test_compressed_syntax_without_decoder_names_the_syntax():
    # Declares JPEG 2000 but holds garbage: whether or not a decoder is installed, the message is specific.
    data = make_dicom(RAMP, transfer_syntax=JPEG2000Lossless, pixel_data=False)
    from pydicom import dcmread
    from pydicom.encaps import encapsulate

    ds = dcmread(io.BytesIO(data))
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(ImageError, match="JPEG 2000"):
        read_dicom(buf.getvalue(), name="j2k.dcm")


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless"])
def test_compressed_dicom_decodes_with_installed_plugins(syntax):
    """RLE (pydicom) and JPEG 2000 (pylibjpeg-openjpeg) compressed MR slices decode like uncompressed ones."""
    import pydicom.uid
    from pydicom import dcmread

    plain = make_dicom(RAMP * 1000)
    ds = dcmread(io.BytesIO(plain))
    ds.compress(getattr(pydicom.uid, syntax))
    buf = io.BytesIO()
    ds.save_as(buf)
    assert np.array_equal(np.asarray(read_dicom(buf.getvalue()).image), np.asarray(read_dicom(plain).image))


def test_jpeg_baseline_dicom_decodes():
    """An 8-bit baseline JPEG inside DICOM (decoded by pylibjpeg-libjpeg or Pillow)."""
    from PIL import Image
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    ramp8 = (RAMP * 4).astype(np.uint8)
    jpg = io.BytesIO()
    Image.fromarray(ramp8).save(jpg, "JPEG", quality=95)
    ds = dcmread(io.BytesIO(make_dicom(ramp8, bits=8)))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpg.getvalue()])
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf)
    px = np.asarray(read_dicom(buf.getvalue()).image).astype(int)
    assert abs(px[0, 0]) <= 6 and px[0, -1] >= 249  # lossy, but the ramp survives


def test_decode_upload_returns_safe_tags_for_dicom_only():
    from PIL import Image

    from brainclf.input import decode_upload

    img, tags = decode_upload(make_dicom(RAMP * 100), "slice.dcm")
    assert img.size == (64, 32) and tags["Modality"] == "MR"
    assert not any(phi in repr(tags) for phi in PHI_STRINGS)
    buf = io.BytesIO()
    Image.new("L", (32, 32), 90).save(buf, "PNG")
    img, tags = decode_upload(buf.getvalue(), "slice.png")
    assert img.size == (32, 32) and tags is None


def test_a_ybr_colour_dicom_is_converted_to_rgb_once():
    """pydicom's pixel_array already returns RGB: converting again turned a grey ramp green and magenta."""
    from brainclf.inference.ood import colourfulness

    ybr = np.zeros((32, 64, 3), np.uint8)
    ybr[..., 0], ybr[..., 1:] = RAMP * 4, 128  # a grey ramp in YCbCr
    s = read_dicom(make_dicom(ybr, bits=8, photometric="YBR_FULL", samples=3))
    px = np.asarray(s.image)
    assert s.image.mode == "RGB" and colourfulness(s.image) < 1
    assert px[0, 0].max() < 8 and px[0, -1].min() > 240


def test_a_palette_colour_dicom_shows_its_colour_table_not_its_indices():
    lut = (np.arange(64)[::-1] * 1024).astype(np.uint16).tobytes()  # index 0 white … 63 black
    tables = {f"{c}PaletteColorLookupTable{part}": value for c in ("Red", "Green", "Blue")
              for part, value in (("Descriptor", [64, 0, 16]), ("Data", lut))}
    px = np.asarray(read_dicom(make_dicom(RAMP, bits=8, photometric="PALETTE COLOR", **tables)).image.convert("L"))
    assert px[0, 0] > 240 and px[0, -1] < 8  # the indices alone would read black → white


def test_an_empty_window_preset_falls_back_to_the_full_range():
    s = read_dicom(make_dicom(RAMP * 60, bits=12, WindowCenter=None, WindowWidth=None))
    px = np.asarray(s.image)
    assert px[0, 0] == 0 and px[0, -1] == 255


@pytest.mark.parametrize("damage,message", [
    ({"RescaleSlope": "0"}, "Rescale Slope is 0, which makes every pixel the same grey value"),
    ("short", "pixel data is .*, less than the .* its header declares \\(the file is cut short"),
])
def test_header_and_pixel_data_problems_are_named_for_what_they_are(damage, message):
    data = make_dicom(RAMP * 60, bits=12, **(damage if isinstance(damage, dict) else {}))
    with pytest.raises(ImageError, match=message) as refused:
        read_dicom(data[:-100] if damage == "short" else data)
    assert "transfer syntax" not in str(refused.value)


def test_a_multiframe_dicom_is_not_read_as_its_middle_frame_by_the_command_line_paths(tmp_path):
    """decode_image (the CLI, batch CSVs, dataset folders) refuses a study, as for a multi-page PNG: a CSV row
    would otherwise stand for one frame the user never chose; the app reads it frame by frame."""
    from brainclf.input import decode_image, decode_upload

    data = make_dicom(np.stack([RAMP] * 3), frames=3)
    with pytest.raises(ImageError, match="holds 3 frames \\(a study\\).*Predict page reads it slice by slice"):
        decode_image(data, name="study.dcm")
    assert decode_upload(data, "study.dcm", frame=1)[0].size == decode_image(make_dicom(RAMP), name="one.dcm").size


@pytest.mark.parametrize("spacing,size", [(["0.5", "1.0"], (64, 16)), (["1.0", "0.5"], (32, 32)),
                                          (["0.5", "0.505"], (64, 32)), (["0", "1"], (64, 32)),
                                          (["0.1", "10"], (64, 32))])
def test_non_square_pixels_are_made_square_before_the_model_and_the_viewer_see_them(spacing, size):
    """A 32-row x 64-column slice: 0.5 mm between rows and 1.0 mm between columns is 16 mm by 64 mm, 16 rows of
    64 at 1.0 mm; the reverse is 32 mm square. Near-square, unreadable and absurd spacings leave it as stored."""
    from brainclf.input import frame_values

    data = make_dicom(RAMP * 1000, PixelSpacing=spacing)
    image = read_dicom(data).image
    assert image.size == size
    assert frame_values(data, "x.dcm").values.shape == (size[1], size[0])  # the viewer's window/level pixels too
    px = np.asarray(image, float)
    assert px[:, -4:].mean() > px[:, :4].mean() + 100  # still dark left, bright right


def test_a_pixel_spacing_kept_as_bytes_is_no_ratio():
    from types import SimpleNamespace

    from brainclf.input.dicom_geometry import pixel_ratio

    assert pixel_ratio(SimpleNamespace(get=lambda k: b"0.5\\1.0" if k == "PixelSpacing" else None)) == 1.0
    assert pixel_ratio(SimpleNamespace(get=lambda k: ["0.5", "1.0"] if k == "PixelAspectRatio" else None)) == 0.5
