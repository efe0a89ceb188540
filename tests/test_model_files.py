"""brainclf.model.model_files.remove_model: an admin's removal moves a model and its card aside, recoverable."""

from __future__ import annotations

import pytest

from brainclf.errors import ModelError
from brainclf.model import list_models, remove_model


def test_removed_model_leaves_the_picker_but_stays_recoverable(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("keep", "gone"):
        (models / f"{name}.keras").write_bytes(b"zip")
        (models / f"{name}.json").write_text("{}")
    dest = remove_model(models / "gone.keras", models)
    assert [p.stem for p in list_models(models)] == ["keep"]
    assert sorted(p.name for p in dest.iterdir()) == ["gone.json", "gone.keras"]
    assert dest.parent == models.resolve() / ".removed"


@pytest.mark.parametrize("target", ["../outside.keras", "/etc/passwd", "missing.keras", "keep.json", "a b.keras"])
def test_only_a_model_of_the_folder_can_be_removed(tmp_path, target):
    models = tmp_path / "models"
    models.mkdir()
    (models / "keep.keras").write_bytes(b"zip")
    (models / "keep.json").write_text("{}")
    (tmp_path / "outside.keras").write_bytes(b"zip")
    with pytest.raises(ModelError):
        remove_model(target, models)
    assert (models / "keep.keras").exists() and (tmp_path / "outside.keras").exists()
