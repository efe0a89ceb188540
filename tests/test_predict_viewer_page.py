"""Issue #27 on the Predict page (AppTest): cases headed by their id with file names on request, a multi-frame
DICOM read as a study behind a slider with its summary, the 64-frame bound, and the full-size view at the
upload's own resolution with DICOM window/level (AppTest does not render dialogs: tests/test_e2e.py opens it,
tests/test_viewer.py checks its picture)."""

from __future__ import annotations

import numpy as np
from test_app import open_page
from test_dicom import make_dicom

from brainclf.input import MAX_STACK_FRAMES
from brainclf.presentation import case_ref, content_hash


def _frames(make_image, n: int) -> np.ndarray:
    return np.stack([np.asarray(make_image("glioma", seed=i).convert("L"), np.uint16) * 10 for i in range(n)])


def test_headings_are_case_ids_and_show_file_names_hides_them_everywhere(make_image, png_bytes):
    data = png_bytes(make_image("glioma", 21))
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value(("Doe_Jane_1970.png", data, "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    (heading,) = [m for m in at.markdown if m.value.startswith("####")]
    assert heading.value.startswith(f"#### Case {case_ref(content_hash(data))}: ")
    assert "Doe" not in heading.value and "Doe\\_Jane\\_1970\\.png" in heading.proto.help  # local mode: on
    at.toggle(key="show_names").set_value(False).run()
    assert not at.exception, [e.value for e in at.exception]
    (heading,) = [m for m in at.markdown if m.value.startswith("####")]
    assert not heading.proto.help
    assert "File" not in at.table[0].value.columns and list(at.dataframe[-1].value["file"]) == [""]
    assert not any("Doe" in str(n.proto) for n in at.main.get("selectbox") + at.main.get("multiselect"))


def test_a_multiframe_dicom_is_a_study_with_a_summary_and_a_slider(make_image):
    data = make_dicom(_frames(make_image, 3), frames=3, WindowCenter="1200", WindowWidth="2400")
    sha = content_hash(data)
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value(("series.dcm", data, "application/dicom")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.value == f"### Study {sha[:12]}" for m in at.markdown)
    (summary,) = [c.value for c in at.caption if c.value.startswith("Study of 3 slices")]
    assert "referred" in summary and "flagged" in summary
    (slider,) = [s for s in at.slider if s.label == "Slice"]
    assert (slider.min, slider.max) == (1, 3)
    (heading,) = [m.value for m in at.markdown if m.value.startswith("####")]  # one slice at a time
    assert heading.startswith(f"#### Case {sha[:12]}\\-{slider.value}: ")
    other = 3 if slider.value != 3 else 1
    slider.set_value(other).run()
    (heading,) = [m.value for m in at.markdown if m.value.startswith("####")]
    assert heading.startswith(f"#### Case {sha[:12]}\\-{other}: ")  # each slice has its own result
    assert list(at.session_state["shown_cases"]) == [f"{sha}:{i}" for i in range(3)]


def test_more_frames_than_the_limit_are_refused_with_a_message():
    n = MAX_STACK_FRAMES + 1
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value(("big.dcm", make_dicom(np.zeros((n, 16, 16)), frames=n), "application/dicom")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"holds {n} frames" in e.value and f"at most {MAX_STACK_FRAMES}" in e.value for e in at.error)
