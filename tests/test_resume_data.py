"""A training resumes only on the data its epochs learnt from: the same files, moved or copied, resume; another
folder laid out the same way (a re-exported copy under the same names) is refused on the command line and set
aside by a new start in the app, never trained on as if it were the run's."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from brainclf.errors import DataError
from brainclf.serving.jobs import TrainingJobs
from brainclf.training import TrainConfig
from brainclf.training.prepare import saved_split
from brainclf.training.state import RunState

SMOKE = TrainConfig(architecture="compact_cnn", image_size=32, epochs=1, batch_size=8, early_stopping_patience=5)


def _reexported(dataset, to):
    """A copy of `dataset` with every image's pixels changed, under the same names."""
    shutil.copytree(dataset, to)
    for path in to.rglob("*.png"):
        pixels = np.asarray(Image.open(path).convert("L"), np.uint8)
        Image.fromarray(255 - pixels).save(path)
    return to


def test_a_moved_copy_resumes_and_a_reexported_one_is_refused(smoke_run, synthetic_dataset, tmp_path):
    state = RunState.load(smoke_run[1])
    assert len(state.content_sha256) == 64
    moved = shutil.copytree(synthetic_dataset, tmp_path / "moved" / synthetic_dataset.name)
    train_s, val_s, _ = saved_split(state, moved, [])
    assert len(train_s) == len(state.train_files) and all(s.path.is_relative_to(moved) for s in train_s)
    with pytest.raises(DataError, match="are not the ones this run learnt from"):
        saved_split(state, _reexported(synthetic_dataset, tmp_path / "reexported"), [])
    state.content_sha256 = ""  # a state saved before the check: names alone, as then
    saved_split(state, tmp_path / "reexported", [])


@pytest.mark.parametrize("resuming", [False, True])
def test_the_app_sets_aside_a_run_on_other_data_only_for_a_new_start(smoke_run, synthetic_dataset, tmp_path,
                                                                     monkeypatch, resuming):
    run = tmp_path / "runs" / "mine"
    shutil.copytree(smoke_run[1], run)
    other = _reexported(synthetic_dataset, tmp_path / "other")
    started = []
    monkeypatch.setattr("brainclf.serving.jobs.train", lambda request: started.append(request.root))
    monkeypatch.setattr(TrainingJobs, "start_task", lambda self, name, work, *a, **kw: work(None, None))
    TrainingJobs().start(SMOKE, synthetic_dataset, "mine", models_dir=tmp_path / "models", run_dir=run)
    assert (run / "state.json").exists()  # its own data: resumed where it is
    TrainingJobs().start(SMOKE, other, "mine", models_dir=tmp_path / "models", run_dir=run, resuming=resuming)
    aside = [p for p in run.parent.iterdir() if p.name.startswith("mine.set-aside-")]
    # A resume keeps the run for train() to refuse with its message; a new start trains afresh beside it.
    assert (len(aside), run.exists()) == ((0, True) if resuming else (1, False))
    assert [str(p) for p in started] == [str(synthetic_dataset), str(other)]
