"""A finished model claims its name atomically when it is published (training, upload, site runs): a model added
under the same name while another was being made is never overwritten, and nothing half-made is left behind. A
site's default model names are valid model names whatever the site is called."""

import shutil

import pytest

from brainclf.errors import BrainclfError, ConfigError, ModelError
from brainclf.model import read_card
from brainclf.model.card import card_path, list_models
from brainclf.model.model_files import publish_model, staged_model
from brainclf.model.uploads import add_model


def _stage(target, text: str):
    """A staged 'model' whose bytes and card say `text`; returns the context manager and its paths."""
    ctx = staged_model(target)
    model, card = ctx.__enter__()
    model.write_text(text)
    card.write_text(text)
    return ctx, model, card


def test_the_second_of_two_writers_of_one_name_is_refused_and_overwrites_nothing(tmp_path):
    target = tmp_path / "models" / "shared.keras"
    first, m1, c1 = _stage(target, "first")
    second, m2, c2 = _stage(target, "second")
    publish_model(m1, c1, target)
    with pytest.raises(ModelError, match="shared already exists .*nothing was overwritten"):
        publish_model(m2, c2, target)
    for ctx in (first, second):
        ctx.__exit__(None, None, None)
    assert target.read_text() == "first" and card_path(target).read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["shared.json", "shared.keras"]  # no staged leftovers


def test_a_lone_model_file_of_that_name_refuses_and_leaves_no_card(tmp_path):
    target = tmp_path / "lone.keras"
    target.write_text("someone's model, card still being written")
    ctx, model, card = _stage(target, "mine")
    with pytest.raises(ModelError, match="already exists"):
        publish_model(model, card, target)
    ctx.__exit__(None, None, None)
    assert target.read_text().startswith("someone's") and not card_path(target).exists()


def test_an_upload_is_refused_when_the_name_is_taken_while_it_is_checked(tmp_path, smoke_model):
    models = tmp_path / "models"
    rival = models / "shared.keras"

    def meanwhile_another_upload_lands(path):
        models.mkdir(exist_ok=True)
        shutil.copyfile(smoke_model, rival)
        shutil.copyfile(card_path(smoke_model), card_path(rival))

    data, card = smoke_model.read_bytes(), card_path(smoke_model).read_bytes()
    # Refused by the check of the installed models that the install repeats, or by the atomic claim of the name.
    with pytest.raises(ModelError, match="already exists|belongs to shared"):
        add_model("shared", data, card, models, uploaded_by="bob", check=meanwhile_another_upload_lands)
    assert not read_card(rival).provenance  # the rival's card, not bob's (an upload's names its uploader)
    assert list_models(models) == [rival]


def test_training_refuses_a_name_held_by_another_model_before_any_epoch(tmp_path, smoke_run, synthetic_dataset):
    from brainclf.training import TrainConfig, TrainRequest, train

    model, _, models_dir = smoke_run
    before = model.read_bytes()
    other = TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=8)
    with pytest.raises(ConfigError, match="smoke already exists .*not made by this run"):
        train(TrainRequest(other, data=synthetic_dataset, name="smoke", models_dir=models_dir,
                           run_dir=tmp_path / "run"))
    assert model.read_bytes() == before
    assert not (tmp_path / "run" / "last.keras").exists()


def test_a_finished_run_may_replace_its_own_model(smoke_run, synthetic_dataset):
    from brainclf.training.finalize import made_by_run
    from brainclf.training.state import RunState

    model, run_dir, _ = smoke_run
    state = RunState.load(run_dir)
    assert made_by_run(model, state)
    state.started, state.config = "another time", {**state.config, "seed": 7}
    assert not made_by_run(model, state)


def test_site_default_names_are_model_names_whatever_the_site_is_called(smoke_model):
    from brainclf.input.limits import MODEL_NAME_MAX, validate_model_name
    from brainclf.site.naming import default_name, new_name

    assert default_name("St.Marys", "smoke", "") == "St-Marys-smoke"
    assert default_name("St.Marys", "smoke", "-adapted") == "St-Marys-smoke-adapted"
    names = {default_name("s" * 48, "m" * 40, suffix) for suffix in ("", "-adapted")}
    assert len(names) == 2 and all(validate_model_name(n) and len(n) <= MODEL_NAME_MAX for n in names)
    assert all(n.startswith("s") and "m" * 40 in n for n in names)
    with pytest.raises(BrainclfError, match="already exists"):
        new_name(smoke_model.parent, "smoke")


def test_a_site_step_redone_saves_under_the_next_free_name(tmp_path, smoke_model):
    from test_site import write_site

    from brainclf.inference import Predictor
    from brainclf.site.run import SiteRun

    run = SiteRun.open(tmp_path / "run", write_site(tmp_path / "site"), "St.Marys", smoke_model)
    models = tmp_path / "models"
    first = run.calibrate(Predictor.load(smoke_model), target=0.9, models_dir=models)
    again = run.calibrate(Predictor.load(smoke_model), target=0.95, models_dir=models)  # another target
    assert (first["name"], again["name"]) == ("St-Marys-smoke", "St-Marys-smoke-2")
    assert read_card(models / "St-Marys-smoke.keras").site["target"] == 0.9  # the first is kept as it was
    assert run.step("calibrate")["name"] == "St-Marys-smoke-2"


def test_a_site_profile_takes_the_next_free_name_when_its_own_was_taken_while_it_ran(tmp_path, smoke_model):
    """An upload that takes SITE-MODEL while the step runs does not make the step refuse at the end."""
    from test_site import write_site

    from brainclf.inference import Predictor
    from brainclf.site.run import SiteRun

    run = SiteRun.open(tmp_path / "run", write_site(tmp_path / "site"), "St.Marys", smoke_model)
    models = tmp_path / "models"
    models.mkdir()

    def phase(words, saving=False):
        def progress(done, total):  # an upload of that name lands while the site's slices are read
            if not (models / "St-Marys-smoke.keras").exists():
                shutil.copyfile(smoke_model, models / "St-Marys-smoke.keras")
        return progress

    result = run.calibrate(Predictor.load(smoke_model), target=0.9, models_dir=models, phase=phase)
    assert result["name"] == "St-Marys-smoke-2" and result["model"] == str(models / "St-Marys-smoke-2.keras")
    assert read_card(models / "St-Marys-smoke-2.keras").name == "St-Marys-smoke-2"
    assert (models / "St-Marys-smoke.keras").read_bytes() == smoke_model.read_bytes()  # the upload is untouched


class _Card:
    def __init__(self, name, on_save=None):
        self.name, self.on_save = name, on_save

    def save(self, path):
        path.write_text(self.name)
        if self.on_save:
            self.on_save(self.name)


def test_a_default_name_claimed_in_the_instant_before_publishing_gives_way_to_the_next(tmp_path):
    from brainclf.site.naming import free_default_name, publish_named

    models = tmp_path / "models"
    models.mkdir()
    claimed = []

    def rival_claims(name):  # another writer publishes that name just after it was chosen, once
        if not claimed:
            claimed.append(name)
            (models / f"{name}.keras").write_text("rival")

    with staged_model(models / "x.keras") as (staged, staged_card):
        staged.write_text("ours")
        out, card = publish_named(models, None, lambda: free_default_name(models, "clinic", "smoke", ""), staged,
                                  staged_card, lambda name: _Card(name, rival_claims))
    assert claimed == ["clinic-smoke"] and out == models / "clinic-smoke-2.keras" and card.name == "clinic-smoke-2"
    assert out.read_text() == "ours" and card_path(out).read_text() == "clinic-smoke-2"
    assert (models / "clinic-smoke.keras").read_text() == "rival"


def test_a_name_of_the_users_own_is_never_swapped_for_another(tmp_path):
    from brainclf.site.naming import publish_named

    models = tmp_path / "models"
    models.mkdir()

    def rival_claims(name):
        (models / f"{name}.keras").write_text("rival")

    with staged_model(models / "x.keras") as (staged, staged_card):
        staged.write_text("ours")
        with pytest.raises(ModelError, match="already exists"):
            publish_named(models, "mine", lambda: "unused", staged, staged_card, lambda n: _Card(n, rival_claims))
    assert (models / "mine.keras").read_text() == "rival" and not card_path(models / "mine.keras").exists()
    assert sorted(p.name for p in models.iterdir()) == ["mine.keras"]  # nothing staged is left behind


def test_an_upload_waits_for_another_being_installed_and_says_so_when_it_waits_too_long(tmp_path, smoke_model,
                                                                                       monkeypatch):
    import subprocess
    import sys

    from brainclf.model import uploads

    models = tmp_path / "models"
    models.mkdir()
    hold = ("import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1], timeout=0); "
            "lock.acquire(); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(models / uploads.UPLOAD_LOCK)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(uploads, "UPLOAD_WAIT_S", 0.5)
        data, card = smoke_model.read_bytes(), card_path(smoke_model).read_bytes()
        with pytest.raises(ModelError, match="Other uploads are being installed; nothing was added"):
            add_model("mine", data, card, models, uploaded_by="bob")
        assert not (models / "mine.keras").exists()
    finally:
        holder.kill()
        holder.wait()
    assert add_model("mine", data, card, models, uploaded_by="bob") == models / "mine.keras"  # once it has ended


def test_no_model_is_written_where_it_would_leave_the_disk_nearly_full(tmp_path, monkeypatch):
    """Every writer (a training's finalisation, a site step's profile or adaptation, an upload) stages through
    staged_model: a user's site runs could otherwise fill the disk the server shares (uploads alone were checked)."""
    from collections import namedtuple

    from brainclf.input import limits
    from brainclf.model.model_files import shutil as files_shutil
    from brainclf.model.model_files import staged_model

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(files_shutil, "disk_usage", lambda p: usage(10 * limits.MIN_FREE_DISK_BYTES, 0,
                                                                    limits.MIN_FREE_DISK_BYTES + 100))
    with staged_model(tmp_path / "models" / "small.keras", 100):
        pass
    with pytest.raises(ModelError, match="saving a model must leave"):
        with staged_model(tmp_path / "models" / "big.keras", 101):
            pass
    assert list((tmp_path / "models").iterdir()) == []
