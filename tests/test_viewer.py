"""Issue #27 (a viewer): DICOM window/level, multi-frame uploads as studies (bounded), the per-study summary,
the Grad-CAM mapped back onto the original resolution, and case ids in place of file names."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from test_dicom import PHI_STRINGS, RAMP, make_dicom

from brainclf.errors import ImageError
from brainclf.input import InputContract, apply_window, decode_upload, frame_count, frame_values, limits, read_dicom
from brainclf.presentation import (
    CaseBook,
    SliceResult,
    case_ref,
    content_hash,
    heatmap_on_original,
    original_view,
    study_summary,
    study_summary_text,
    viewer_picture,
)


def test_apply_window_maps_centre_and_width_to_black_and_white():
    pixels = np.array([[0, 100, 150, 200, 300]], dtype=np.int16)
    out = apply_window(pixels, centre=150, width=100)
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    assert out.tolist() == [[0, 0, 128, 255, 255]]
    assert apply_window(pixels, 150, 0).tolist() == [[0, 0, 128, 255, 255]]  # a width under 1 is 1: a threshold


def test_window_tags_are_whitelisted_and_are_the_viewers_defaults():
    data = make_dicom(RAMP * 10, WindowCenter="300", WindowWidth="200")
    tags = read_dicom(data).metadata
    assert tags["Window centre"] == "300" and tags["Window width"] == "200"
    assert not any(phi in repr(tags) for phi in PHI_STRINGS)
    values = frame_values(data, "upload.dcm")
    assert (values.centre, values.width, values.invert) == (300.0, 200.0, False)
    no_tags = frame_values(make_dicom(RAMP * 10), "upload.dcm")  # the frame's full range
    assert (no_tags.centre, no_tags.width) == (315.0, 630.0)


def test_multiframe_counts_and_more_than_the_limit_is_refused():
    stack = np.stack([RAMP * (i + 1) for i in range(3)])
    data = make_dicom(stack, frames=3)
    assert frame_count(data, "x.dcm") == 3 and frame_count(b"not a dicom", "x.png") == 1
    img, _ = decode_upload(data, "upload.dcm", frame=2)  # one frame of a study
    assert img.size == (64, 32)
    n = limits.MAX_STACK_FRAMES + 1
    big = make_dicom(np.zeros((n, 16, 16)), frames=n)
    assert frame_count(big, "x.dcm") == n
    with pytest.raises(ImageError, match=f"holds {n} frames; at most {limits.MAX_STACK_FRAMES}"):
        decode_upload(big, "upload.dcm")


def test_study_summary_counts_and_finds_the_most_confident_tumour_slice():
    results = [SliceResult(0, "notumor", 0.99, "accept"), SliceResult(1, "glioma", 0.97, "accept"),
               SliceResult(2, "glioma", 0.80, "refer"), SliceResult(3, "pituitary", 0.999, "ood"),
               SliceResult(4, None, 0.0, "error"), SliceResult(5, "meningioma", 0.98, "refer"),
               SliceResult(6, "glioma", 0.95, "accept")]
    s = study_summary(results)
    assert (s.slices, s.referred, s.flagged, s.failed) == (7, 2, 1, 1)
    assert s.answers == {"glioma": 2, "notumor": 1}
    assert s.top_tumour.frame == 5  # the flagged slice's 99.9 % does not count
    text = study_summary_text(s)
    assert text.startswith("Study of 7 slices: Glioma 2, No tumour 1 · 2 referred · 1 flagged")
    # The headline's slice was referred: its class is the model's leaning, not an answer, and the line says so.
    assert "most confident tumour slice: 6 (Meningioma, 98.0 %, referred: not an answer)" in text
    accepted = study_summary_text(study_summary(results[:2]))
    assert accepted.endswith("most confident tumour slice: 2 (Glioma, 97.0 %).")
    assert study_summary([SliceResult(0, "notumor", 0.9, "accept")]).top_tumour is None


def test_heatmap_goes_back_onto_the_original_through_padding_and_head_crop():
    img = np.zeros((100, 200), np.uint8)
    img[30:70, 120:180] = 200  # the head: a bright block
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    heat = np.zeros((32, 32), np.float32)
    heat[12:20, 12:20] = 1.0  # the centre of the model's square
    plain = original_view(buf.getvalue(), "x.png", InputContract(size=32))
    assert plain.image.shape == (100, 200) and plain.size == (200, 100)  # its own resolution
    cam = heatmap_on_original(heat, plain)
    ys, xs = np.nonzero(cam > 0.5)
    assert abs(xs.mean() - 100) < 3 and abs(ys.mean() - 50) < 3  # the centre of the whole image
    cropped = original_view(buf.getvalue(), "x.png", InputContract(size=32, crop="head"))
    ys, xs = np.nonzero(heatmap_on_original(heat, cropped) > 0.5)
    assert abs(xs.mean() - 150) < 4 and abs(ys.mean() - 50) < 4  # the centre of the head's box
    assert viewer_picture(cropped, heat, 0.5).shape == (100, 200, 3)


def test_viewer_applies_a_dicom_window_and_scales_huge_images_down(monkeypatch):
    view = original_view(make_dicom(RAMP * 10), "upload.dcm", InputContract(size=32))
    narrow = viewer_picture(view, window=(315, 20))[..., 0]
    assert narrow[0, 0] == 0 and narrow[0, -1] == 255 and (narrow[0] == 255).sum() > 20
    monkeypatch.setattr("brainclf.presentation.viewer.MAX_VIEWER_SIDE", 32)
    small = original_view(make_dicom(RAMP * 10), "upload.dcm", InputContract(size=32))
    assert small.image.shape == (16, 32) and small.values.values.shape == (16, 32) and small.scaled


def test_a_multiframe_upload_is_a_study_of_cases_evicted_together():
    book = CaseBook(max_cases=2)
    data = make_dicom(np.stack([RAMP] * 3), frames=3)
    frames = book.add_upload("Doe^Jane.dcm", data, lambda: 3)
    sha = content_hash(data)
    assert [c.ref for c in frames] == [f"{sha[:12]}-1", f"{sha[:12]}-2", f"{sha[:12]}-3"]
    assert {c.study for c in frames} == {sha} and [c.frame for c in frames] == [0, 1, 2]
    assert book.add_upload("again.dcm", data, lambda: pytest.fail("counted twice")) == frames
    assert case_ref(sha) == sha[:12] and frames[0].label(False) == f"Case {sha[:12]}-1"
    book.add("a.png", b"a")
    assert len(book) == 4  # two uploads: the study counts once
    book.add("b.png", b"b")
    assert len(book) == 2 and all(c.frame is None for c in book.cases())  # the study went, all its slices
    rows = book.history_rows("m", show_names=False)
    assert [r["file"] for r in rows] == ["", ""] and book.history_rows("m")[0]["file"] == "b.png"
