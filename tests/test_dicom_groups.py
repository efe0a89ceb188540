"""An enhanced multi-frame DICOM keeps its window, rescale and pixel spacing in functional groups (shared, then
per frame): the slice is shown through the window its scanner set for that frame, not the frame's full range."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from test_dicom import RAMP, make_dicom

from brainclf.input import frame_values, read_dicom


def _group(**macros) -> Dataset:
    group = Dataset()
    for macro, values in macros.items():
        item = Dataset()
        for keyword, value in values.items():
            setattr(item, keyword, value)
        setattr(group, macro, [item])
    return group


def _enhanced(per_frame: list[Dataset], shared: Dataset | None = None) -> bytes:
    frames = np.stack([RAMP * 16] * len(per_frame))  # 0 .. 1008, dark left → bright right, in every frame
    tags = {"PerFrameFunctionalGroupsSequence": per_frame}
    if shared is not None:
        tags["SharedFunctionalGroupsSequence"] = [shared]
    return make_dicom(frames, frames=len(per_frame), **tags)


def _window(centre: str, width: str) -> Dataset:
    return _group(FrameVOILUTSequence={"WindowCenter": centre, "WindowWidth": width})


def test_each_frame_is_shown_through_its_own_window():
    data = _enhanced([_window("256", "512"), _window("512", "1024")])
    narrow, full = (np.asarray(read_dicom(data, frame=f).image, float) for f in (0, 1))
    assert narrow[0, 40] == 255  # 640 is above the first frame's window: white
    assert 150 < full[0, 40] < 170  # and about 63 % of the second's
    assert (frame_values(data, "e.dcm", 0).centre, frame_values(data, "e.dcm", 0).width) == (256, 512)  # viewer


def test_a_frames_own_group_overrides_the_shared_one_and_a_shared_spacing_squares_the_pixels():
    shared = _group(FrameVOILUTSequence={"WindowCenter": "512", "WindowWidth": "1024"},
                    PixelMeasuresSequence={"PixelSpacing": ["0.5", "1.0"]})
    data = _enhanced([Dataset(), _window("256", "512")], shared)
    assert frame_values(data, "e.dcm", 0).centre == 512  # a frame without its own window: the shared one
    assert frame_values(data, "e.dcm", 1).centre == 256
    assert read_dicom(data, frame=0).image.size == (64, 16)  # 0.5 mm rows, 1.0 mm columns


def test_a_rescale_in_the_frame_group_is_applied_before_the_window():
    group = _group(PixelValueTransformationSequence={"RescaleSlope": "2", "RescaleIntercept": "0"},
                   FrameVOILUTSequence={"WindowCenter": "1024", "WindowWidth": "2048"})
    values = frame_values(_enhanced([group, group]), "e.dcm", 0).values
    assert values.max() == 2016


def test_malformed_or_missing_groups_leave_the_top_level_as_it_is():
    broken = Dataset()
    broken.FrameVOILUTSequence = []  # an empty macro
    data = _enhanced([broken])  # one frame, no shared group
    image = np.asarray(read_dicom(data).image, float)
    assert image[0, 0] == 0 and image[0, -1] == 255  # the frame's full range


def test_a_malformed_value_in_a_frame_group_is_skipped_and_the_file_still_read():
    """A per-frame Window Center whose VR says FD over 4 bytes cannot be converted: it is left out (the frame's full
    range), not the whole file refused."""
    data = _enhanced([_window("7777", "512"), _window("7777", "512")])
    bad = data.replace(b"DS\x04\x007777", b"FD\x04\x007777")
    assert bad != data
    image = np.asarray(read_dicom(bad, frame=0).image, float)
    assert image[0, 0] == 0 and image[0, -1] == 255  # the frame's full range: its window was not usable
