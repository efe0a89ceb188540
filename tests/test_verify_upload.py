"""Re-measuring an uploaded model's figures on this server's data (brainclf.evaluation.verify_uploaded_model) from
the command line (`python -m brainclf verify`) and from the Model page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from test_access_pages import app_as, run_page, signed_in
from test_card_schema import invented_claim

from brainclf.cli import main
from brainclf.escaping import md_literal
from brainclf.evaluation import card_is_verified
from brainclf.model import add_model, card_path, read_card

REPO = Path(__file__).resolve().parent.parent


def test_the_verify_command_replaces_the_claim_and_says_both(smoke_model, synthetic_dataset, tmp_path, capsys):
    added = add_model("up", smoke_model.read_bytes(), json.dumps(invented_claim(smoke_model)).encode(), tmp_path,
                      uploaded_by="bob")
    assert not card_is_verified(read_card(added))
    assert main(["verify", "--model", str(added), "--data", str(synthetic_dataset)]) == 0
    card = read_card(added)
    assert card_is_verified(card) and card.metrics["test"]["n"] == 12
    out = capsys.readouterr().out
    assert "re-measured on 12 images" in out and "the uploader claimed 99.9 %" in out


def test_the_verify_command_refuses_a_model_trained_here(smoke_model, synthetic_dataset, tmp_path, capsys):
    shutil.copy(smoke_model, tmp_path / "m.keras")
    shutil.copy(card_path(smoke_model), tmp_path / "m.json")
    assert main(["verify", "--model", str(tmp_path / "m.keras"), "--data", str(synthetic_dataset)]) != 0
    assert "was not uploaded" in capsys.readouterr().err


def test_a_researcher_re_measures_an_upload_on_the_model_page(smoke_model, synthetic_dataset, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    add_model("up", smoke_model.read_bytes(), json.dumps(invented_claim(smoke_model)).encode(), models,
              uploaded_by="**Dr Bob** $x$", uploaded_by_id="sub:bob-1")  # an upload claiming 99.9 %, and
    # (installed after it) a model trained here
    shutil.copy(smoke_model, models / "default.keras")
    shutil.copy(card_path(smoke_model), models / "default.json")
    toml = tmp_path / "brainclf.toml"
    toml.write_text(f'[data]\nbrain-mri = "{synthetic_dataset}"\n\n'
                    '[roles.researcher]\nemails = ["res@clinic.example"]\n')
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    monkeypatch.setenv("BRAINCLF_MODELS", str(models))
    monkeypatch.setenv("BRAINCLF_AUDIT_DIR", str(tmp_path / "audit"))
    at = run_page(app_as(signed_in("researcher")), "model")
    assert any("Re-measure an uploaded model" in e.label for e in at.expander)
    assert at.selectbox(key="verify_pick").options == ["up"]  # only the upload: the other was measured here
    at.button(key="verify_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # The uploader's display name is theirs to choose: the note renders literally (Markdown-escaped), beside the
    # account it came from, and its dates are whole (they were cut to "2026-12-0…").
    note = next(s.value for s in at.success if "re\\-measured" in s.value)
    assert md_literal("**Dr Bob** $x$") in note
    plain = re.sub(r"\\(.)", r"\1", note)
    assert "test metrics re-measured on this server (12 images" in plain and "(account sub:bob-1)" in plain
    assert re.search(r"on \d{4}-\d{2}-\d{2};", plain) and re.search(r", \d{4}-\d{2}-\d{2}\)\.$", plain), plain
    assert card_is_verified(read_card(models / "up.keras"))
    at.run()  # nothing left to re-measure: the expander goes
    assert not any("Re-measure an uploaded model" in e.label for e in at.expander)


def test_re_measuring_again_keeps_what_the_uploader_claimed(smoke_model, synthetic_dataset, tmp_path, capsys):
    added = add_model("up", smoke_model.read_bytes(), json.dumps(invented_claim(smoke_model)).encode(), tmp_path)
    for _ in range(2):
        assert main(["verify", "--model", str(added), "--data", str(synthetic_dataset)]) == 0
        assert "the uploader claimed 99.9 %" in capsys.readouterr().out
    assert read_card(added).provenance["claimed_test_accuracy"] == 0.999


def test_the_app_re_measures_an_upload_in_the_model_process_only(smoke_model, synthetic_dataset, tmp_path):
    """The Model page passes its model-process predictor: the server's own process never opens the upload."""
    added = add_model("up", smoke_model.read_bytes(), json.dumps(invented_claim(smoke_model)).encode(), tmp_path)
    code = ("import json, sys\n"
            "from brainclf.evaluation import verify_uploaded_model\n"
            "from brainclf.inference import ProcessPredictor\n"
            f"card = verify_uploaded_model({str(added)!r}, {str(synthetic_dataset)!r}, "
            f"predictor=ProcessPredictor.start({str(added)!r}))\n"
            "print(json.dumps([card.metrics['test']['n'], 'tensorflow' in sys.modules, 'keras' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [12, False, False]
    assert card_is_verified(read_card(added))


def test_an_uploads_own_file_list_does_not_pick_which_images_its_verified_figure_leaves_out(
        smoke_model, synthetic_dataset, tmp_path):
    """The attack: list the Testing images the model gets wrong as 'trained on' under the server's folder name, and
    the re-measure left them out and stored the higher figure as verified."""
    from brainclf.data import discover, relative_path
    from brainclf.evaluation import learnt_mask, verify_uploaded_model

    testing = [relative_path(s.path, synthetic_dataset) for s in discover(synthetic_dataset).splits["Testing"]]
    claim = invented_claim(smoke_model)
    claim["training"] = {**claim["training"], "files": {"train": testing[:6], "val": []},
                         "fingerprint": {**claim["training"].get("fingerprint", {}),
                                         "root_name": synthetic_dataset.resolve().name}}
    added = add_model("up", smoke_model.read_bytes(), json.dumps(claim).encode(), tmp_path, uploaded_by="eve")
    samples = discover(synthetic_dataset).splits["Testing"]
    assert not learnt_mask(read_card(added), samples, synthetic_dataset, None).any()
    assert verify_uploaded_model(added, synthetic_dataset).metrics["test"]["n"] == len(testing) == 12


def test_a_site_profile_of_an_upload_is_not_re_verified_over_its_site_mark(smoke_model, synthetic_dataset, tmp_path):
    """Re-measuring replaced the mark that its site figures were measured here: they then read as claimed."""
    import pytest

    from brainclf.errors import ModelError
    from brainclf.evaluation import verify_uploaded_model
    from brainclf.model.card import SITE_STEP

    added = add_model("up", smoke_model.read_bytes(), json.dumps(invented_claim(smoke_model)).encode(), tmp_path)
    card = read_card(added)
    card.provenance = {**card.provenance, "metrics_verified": True, "verified_by": SITE_STEP}
    card.site = {"name": "clinic", "scope": "validated at clinic", "adapted": False, "target": 0.98}
    card.save(card_path(added))
    with pytest.raises(ModelError, match="a site model of an upload, its figures measured here by its site steps"):
        verify_uploaded_model(added, synthetic_dataset)
    assert read_card(added).measured_site["name"] == "clinic"


def test_an_upload_is_re_measured_on_its_own_training_source_only(smoke_model, synthetic_dataset, tmp_path, capsys):
    """The re-measured figure replaces its test split's and reads "(in-distribution)": measured on another
    dataset (an external source picked by mistake) it would have been labelled as the Kaggle test figure."""
    added = add_model("up", smoke_model.read_bytes(), json.dumps(invented_claim(smoke_model)).encode(), tmp_path)
    other = tmp_path / "another-hospital"
    shutil.copytree(synthetic_dataset, other)
    assert main(["verify", "--model", str(added), "--data", str(other)]) != 0
    err = capsys.readouterr().err
    assert f"come from the test split of its training source, {synthetic_dataset.name}; another-hospital is not" in err
    assert not card_is_verified(read_card(added))
    assert main(["verify", "--model", str(added), "--data", str(synthetic_dataset)]) == 0


def test_an_upload_naming_no_training_source_is_not_re_measured_but_its_sources_test_split_is(
        smoke_model, synthetic_dataset, tmp_path, capsys):
    card = invented_claim(smoke_model)
    card["training"].pop("fingerprint", None)
    nameless = add_model("nameless", smoke_model.read_bytes(), json.dumps(card).encode(), tmp_path / "a")
    assert main(["verify", "--model", str(nameless), "--data", str(synthetic_dataset)]) != 0
    assert "names no training source" in capsys.readouterr().err
    named = add_model("named", smoke_model.read_bytes(), json.dumps(invented_claim(smoke_model)).encode(),
                      tmp_path / "b")
    # Its Training folder is what it learnt from, not a test split; its Testing folder is one.
    assert main(["verify", "--model", str(named), "--data", str(synthetic_dataset / "Training")]) != 0
    assert "is not that" in capsys.readouterr().err and not card_is_verified(read_card(named))
    assert main(["verify", "--model", str(named), "--data", str(synthetic_dataset / "Testing")]) == 0
    assert read_card(named).provenance["verified_on"]["root_name"] == f"{synthetic_dataset.name}/Testing"
