"""predict --folder on an archive with one sub-folder that cannot be listed: that folder is skipped with a warning
naming it, the rest is predicted (it aborted with 'Permission denied' and nothing predicted)."""

from __future__ import annotations

import csv
import os

import pytest

from brainclf.cli import main
from brainclf.data import iter_image_files


@pytest.fixture
def locked(monkeypatch):
    """os.scandir refuses any folder named zz_locked, as chmod 000 does for a user other than root (tests run as
    root in CI, which chmod does not stop)."""
    real = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)) == "zz_locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_predict_folder_skips_a_locked_sub_folder_with_a_warning_and_predicts_the_rest(smoke_model, tmp_path,
                                                                                      make_image, capsys, locked):
    pf = tmp_path / "pf"
    (pf / "zz_locked").mkdir(parents=True)
    make_image().save(pf / "a.png")
    make_image(seed=1).save(pf / "zz_locked" / "b.png")
    out = tmp_path / "out.csv"
    rc = main(["predict", "--model", str(smoke_model), "--folder", str(pf), "--csv", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    with open(out, newline="") as f:
        assert [r["file"] for r in csv.DictReader(f)] == ["a.png"]
    warned = [line for line in err.splitlines() if "zz_locked" in line]
    assert len(warned) == 1 and "cannot be listed (Permission denied)" in warned[0]


def test_the_folder_itself_unlisted_still_raises(tmp_path, locked):
    (tmp_path / "zz_locked").mkdir()
    with pytest.raises(PermissionError):
        list(iter_image_files(tmp_path / "zz_locked"))
