"""Issue #27: a folder of single-frame DICOM slices of one series (same SeriesInstanceUID) is read as a study,
like a multi-frame DICOM: ordered by ImagePositionPatient (else InstanceNumber), a result per slice and a
summary per study. Made-up DICOMs (pydicom) only."""

from __future__ import annotations

import numpy as np
from pydicom.uid import generate_uid
from test_app import open_page
from test_dicom import make_dicom

from brainclf.input import limits
from brainclf.input.dicom_stack import series_groups, series_slice
from brainclf.presentation import CaseBook, content_hash

AXIAL = ["1", "0", "0", "0", "1", "0"]  # rows along x, columns along y: the slice normal is z


def _slice(make_image, series: str, seed: int, z: float | None = None, instance: int | None = None, **tags) -> bytes:
    pixels = np.asarray(make_image("glioma", seed=seed).convert("L"), np.uint16) * 10
    if z is not None:
        tags.update(ImagePositionPatient=["-100", "-100", str(z)], ImageOrientationPatient=AXIAL)
    if instance is not None:
        tags["InstanceNumber"] = str(instance)
    return make_dicom(pixels, SeriesInstanceUID=series, **tags)


def test_slices_of_one_series_are_one_group_ordered_by_position_along_the_normal(make_image, png_bytes):
    series, other = generate_uid(), generate_uid()
    # Uploaded out of order; InstanceNumber disagrees with the positions on purpose: the position wins.
    uploads = [("c.dcm", _slice(make_image, series, 1, z=20.0, instance=1)),
               ("photo.png", png_bytes(make_image("glioma", 9))),
               ("a.dcm", _slice(make_image, series, 2, z=-10.0, instance=3)),
               ("lone.dcm", _slice(make_image, other, 3, z=0.0)),
               ("b.dcm", _slice(make_image, series, 4, z=5.0, instance=2))]
    assert series_groups(uploads) == [[2, 4, 0], [1], [3]]  # the series sits where its first slice was uploaded
    assert series_slice(uploads[1][1], "photo.png") is None
    assert series_slice(uploads[0][1], "c.dcm").series == series


def test_without_positions_instance_number_orders_them_and_without_either_the_upload_order(make_image):
    series = generate_uid()
    numbered = [(f"{i}.dcm", _slice(make_image, series, i, instance=n)) for i, n in enumerate((3, 1, 2))]
    assert series_groups(numbered) == [[1, 2, 0]]
    plain = [(f"{i}.dcm", _slice(make_image, generate_uid() if i == 0 else series, i)) for i in range(3)]
    assert series_groups(plain) == [[0], [1, 2]]  # a different series is not grouped in


def test_a_multiframe_file_the_same_bytes_twice_and_a_long_series(make_image, monkeypatch):
    series = generate_uid()
    one = _slice(make_image, series, 1, z=1.0)
    multi = make_dicom(np.zeros((2, 16, 16)), frames=2, SeriesInstanceUID=series)
    assert series_groups([("a.dcm", one), ("a-again.dcm", one), ("m.dcm", multi)]) == [[0], [1], [2]]
    monkeypatch.setattr(limits, "MAX_STACK_FRAMES", 2)
    five = [(f"{i}.dcm", _slice(make_image, series, i, z=float(i))) for i in range(5)]
    assert series_groups(five) == [[0, 1], [2, 3], [4]]  # parts of at most MAX_STACK_FRAMES slices


def test_a_series_is_one_study_in_the_case_book(make_image):
    series = generate_uid()
    uploads = [(f"Doe^Jane-{i}.dcm", _slice(make_image, series, i, z=float(i))) for i in range(3)]
    book = CaseBook(max_cases=2)
    cases = book.add_series(uploads)
    assert [c.position for c in cases] == [0, 1, 2] and [c.frame for c in cases] == [None] * 3
    assert len({c.study for c in cases}) == 1 and [c.data for c in cases] == [d for _, d in uploads]
    assert [c.ref for c in cases] == [f"{cases[0].study[:12]}-{i}" for i in (1, 2, 3)]
    assert book.add_series(uploads) == cases  # the same series again: the same cases
    book.add(name="x.png", data=b"x")
    book.add(name="y.png", data=b"y")  # two more uploads: the series (all its slices) is evicted as one
    assert len(book) == 2 and not any(c.study == cases[0].study for c in book.cases())


def test_the_predict_page_reads_a_series_as_a_study_with_a_summary_and_a_slider(make_image):
    series = generate_uid()
    slices = {z: _slice(make_image, series, int(z) + 5, z=z) for z in (30.0, 10.0, 20.0)}
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value([(f"slice-{int(z)}.dcm", data, "application/dicom")
                                   for z, data in slices.items()]).run()
    assert not at.exception, [e.value for e in at.exception]
    study = content_hash("".join(content_hash(slices[z]) for z in (10.0, 20.0, 30.0)).encode())
    assert any(m.value == f"### Study {study[:12]}" for m in at.markdown)
    (summary,) = [c.value for c in at.caption if c.value.startswith("Study of 3 slices")]
    assert "referred" in summary and "flagged" in summary
    (slider,) = [s for s in at.slider if s.label == "Slice"]
    assert (slider.min, slider.max) == (1, 3)
    (heading,) = [m.value for m in at.markdown if m.value.startswith("####")]  # one slice at a time
    assert heading.startswith(f"#### Case {study[:12]}\\-{slider.value}: ")
    assert list(at.session_state["shown_cases"]) == [f"{study}:{i}" for i in range(3)]
    assert len(at.table) == 0  # the study's summary, not a row per slice in the batch table
