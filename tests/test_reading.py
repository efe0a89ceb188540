"""brainclf.input.reading: an image file is read only when it is a regular file within the one-file limit; a
device or a named pipe (both report 0 bytes) is refused without reading it, never waited on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from brainclf.errors import ImageError
from brainclf.input import decode_image, read_image_file


def test_a_regular_file_is_read_whole(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG" + bytes(100))
    assert read_image_file(path) == b"\x89PNG" + bytes(100)


def test_a_file_above_the_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(bytes(1001))
    with pytest.raises(ImageError, match="big.png: the file is .* above the limit"):
        read_image_file(path, limit=1000)
    assert read_image_file(path, limit=1001) == bytes(1001)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero on this system")
def test_a_device_is_refused_without_reading_it():
    with pytest.raises(ImageError, match="not a regular file"):
        decode_image("/dev/zero")  # st_size 0: read_bytes would fill memory


def test_a_named_pipe_is_refused_at_once_not_waited_on(tmp_path):
    pipe = tmp_path / "x.png"
    os.mkfifo(pipe)  # no writer: a plain open() would block for ever
    with pytest.raises(ImageError, match="x.png: not a regular file"):
        read_image_file(pipe)


def test_a_folder_and_a_missing_file_are_refused_by_name(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError, match="d.png: (not a regular file|cannot read file)"):
        read_image_file(tmp_path / "d.png")
    with pytest.raises(ImageError, match="gone.png: cannot read file"):
        read_image_file(tmp_path / "gone.png")


def test_a_refused_folder_leaves_no_open_descriptor(tmp_path):
    (tmp_path / "d.png").mkdir()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        with pytest.raises(ImageError, match="d.png: not a regular file"):
            read_image_file(tmp_path / "d.png")
    assert len(os.listdir("/proc/self/fd")) <= before + 2  # 50 leaked before
