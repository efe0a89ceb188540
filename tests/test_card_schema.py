"""brainclf.model.card_schema: a card is refused on load and upload, with the field and the problem named, unless every
section the code reads has the right types and ranges; version-1 cards (the bundled ones) are migrated on read."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
from functools import cache
from pathlib import Path

import pytest

from brainclf import CLASS_NAMES
from brainclf.errors import ModelError
from brainclf.model import (
    SCHEMA_VERSION,
    ModelCard,
    add_model,
    card_from_bytes,
    card_path,
    display_text,
    load_model,
    read_card,
)

REPO = Path(__file__).resolve().parent.parent
BUNDLED = sorted((REPO / "models").glob("*.json"))


@cache
def _seed_text() -> str:
    return (REPO / "models" / "seed.json").read_text()


def seed_card() -> dict:
    """A fresh copy of the bundled seed card (version 1, full size: every section filled)."""
    return json.loads(_seed_text())


def set_at(d: dict, path: str, value) -> dict:
    """Set d[a][b][0]... for path 'a.b.0', creating nothing: the path must exist up to its last step."""
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    obj = d
    for k in keys[:-1]:
        obj = obj[k]
    obj[keys[-1]] = value
    return d


def refused(d, tmp_path) -> str:
    """The ModelError message read_card gives for card dict `d` (written as tmp_path/m.json)."""
    (tmp_path / "m.json").write_text(json.dumps(d))
    with pytest.raises(ModelError) as e:
        read_card(tmp_path / "m.keras")
    return str(e.value)


# ---- the bundled cards --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_cards_load_and_are_migrated_on_read_only(path):
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    raw = json.loads(path.read_text())
    card = read_card(path.with_suffix(".keras"))
    assert card.schema_version == SCHEMA_VERSION
    if "schema_version" not in raw:  # version 1: only schema_version and an empty provenance were added
        assert card.provenance == {}
    for key, value in raw.items():
        assert getattr(card, key) == value, key
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # never rewritten by reading


def test_a_version_1_card_reads_as_version_2_with_nothing_else_changed():
    raw = seed_card()
    assert "schema_version" not in raw and "provenance" not in raw
    card = ModelCard.from_dict(raw)
    assert card.schema_version == 2 and card.provenance == {}
    assert card.test_predictions == raw["test_predictions"] and card.metrics == raw["metrics"]
    assert "schema_version" not in raw  # the caller's dict is not modified


def test_a_card_from_a_newer_brainclf_is_refused(tmp_path):
    msg = refused({**seed_card(), "schema_version": SCHEMA_VERSION + 1}, tmp_path)
    assert "schema_version 3 was written by a newer brainclf" in msg


def test_round_trip_keeps_every_value(tmp_path):
    raw = seed_card()
    card = ModelCard.from_dict(raw)
    card.save(tmp_path / "c.json")
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved == {**raw, "schema_version": 2, "provenance": {}}
    back = read_card(tmp_path / "c.keras")
    assert back == card
    back.save(tmp_path / "d.json")
    assert (tmp_path / "d.json").read_text() == (tmp_path / "c.json").read_text()


def test_unknown_keys_inside_sections_are_kept_unknown_top_level_keys_dropped(tmp_path):
    raw = seed_card()
    raw["training"]["augmentation_policy"] = {"anything": [1, "two", None]}
    raw["metrics"]["test"]["new_metric"] = "free text"
    raw["ood"]["future"] = [[1, 2]]
    raw["some_future_field"] = 1
    (tmp_path / "m.json").write_text(json.dumps(raw))
    card = read_card(tmp_path / "m.keras")
    assert card.training["augmentation_policy"] == {"anything": [1, "two", None]}
    assert card.metrics["test"]["new_metric"] == "free text" and card.ood["future"] == [[1, 2]]
    assert not hasattr(card, "some_future_field")


# ---- probes: each one refused, naming the field and the problem ---------------------------------------------
EXT = "metrics.external.external-radiopaedia"
PROBES = [
    # wrong types: the "metrics.test = 'abc'" crashed every page
    ("metrics.test", "abc", r"metrics\.test: must be a JSON object \(got the text 'abc'\)"),
    ("metrics", [], r"metrics: must be a JSON object \(got a list of 0\)"),
    ("metrics.test.accuracy", "0.99", r"metrics\.test\.accuracy: must be a number \(got the text '0\.99'\)"),
    ("metrics.test.accuracy", True, r"metrics\.test\.accuracy: must be a number \(got True\)"),
    ("metrics.test.n", 1025.0, r"metrics\.test\.n: must be a whole number"),
    ("metrics.test.per_class.glioma.recall", None, r"metrics\.test\.per_class\.glioma\.recall: must be a number"),
    ("training.train_seconds", None, r"training\.train_seconds: must be a number \(got null\)"),
    ("training.history", [0.1], r"training\.history: must be a JSON object"),
    ("faithfulness.deletion.gradcam_auc", "low", r"faithfulness\.deletion\.gradcam_auc: must be a number"),
    ("ood.threshold", "high", r"ood\.threshold: must be a number"),
    ("ood.means", [[0.1, "x"]], r"ood\.means\[0\]\[1\]: must be a number"),
    ("params", -1, r"params: must be greater than or equal to 0"),
    ("file_sha256", "not-a-hash", r"file_sha256: must be the model file's SHA-256: 64 lowercase hex digits"),
    # out-of-range rates and numbers
    ("metrics.test.accuracy", 1.5, r"metrics\.test\.accuracy: must be less than or equal to 1 \(got 1\.5\)"),
    ("metrics.val.ece", -0.1, r"metrics\.val\.ece: must be greater than or equal to 0"),
    (f"{EXT}.called_notumor_unflagged_rate", 2, r"called_notumor_unflagged_rate: must be less than or equal to 1"),
    ("metrics.test.n", -3, r"metrics\.test\.n: must be greater than or equal to 0"),
    ("calibration.temperature", 0, r"calibration\.temperature: must be greater than or equal to 0\.001"),
    ("calibration.refer_threshold", 1.5, r"calibration\.refer_threshold: must be less than or equal to 1"),
    ("calibration.refer_threshold", float("nan"), r"calibration\.refer_threshold: must be a finite number"),
    ("input_contract.size", 4096, r"input_contract\.size: must be less than or equal to 1024"),
    ("input_contract.channels", 2, r"input_contract\.channels: must be 1 or 3"),
    ("faithfulness.randomisation.mean_spearman", 3.0, r"faithfulness\.randomisation\.mean_spearman"),
    # shapes
    ("metrics.test.confusion_matrix", [[1, 2], [3, 4]], r"metrics\.test\.confusion_matrix.*must have at least 4 items"),
    ("metrics.test.confusion_matrix.0.0", -1, r"metrics\.test\.confusion_matrix\[0\]\[0\]: must be greater than or"),
    ("metrics.test.confusion_matrix.0.0", 0.5, r"metrics\.test\.confusion_matrix\[0\]\[0\]: must be a whole number"),
    ("test_predictions.0.probs", [0.5, 0.5], r"test_predictions\[0\]\.probs: must have at least 4 items"),
    ("test_predictions.0.probs", [1.2, 0, 0, 0], r"test_predictions\[0\]\.probs\[0\]: must be less than or equal to 1"),
    ("ood.precision", [[1.0]], r"ood: precision must be a 16 x 16 matrix"),
    # paths: the '../../' and absolute paths
    ("test_predictions.0.path", "../../etc/passwd", r"test_predictions\[0\]\.path: must stay inside the data folder"),
    ("test_predictions_tta.5.path", "/etc/passwd", r"test_predictions_tta\[5\]\.path: must be a relative path"),
    ("external_predictions.external-radiopaedia.0.path", "glioma/../../../x.png",
     r"external_predictions\.external-radiopaedia\[0\]\.path: must stay inside"),
    ("external_predictions.external-radiopaedia.1.path", "..\\..\\x.png", r"\[1\]\.path: must use '/' between folders"),
    ("external_predictions.external-radiopaedia.2.path", "C:/Windows/x.png", r"\[2\]\.path: must be a relative path"),
    ("training.files.train.0", "/etc/shadow", r"training\.files\.train\[0\]: must be a relative path"),
    ("training.files.val.0", "src::../x.png", r"training\.files\.val\[0\]: must stay inside the data folder"),
    ("metrics.test.misclassified.0.path", "../x.png", r"metrics\.test\.misclassified\[0\]\.path: must stay inside"),
    # class names
    ("test_predictions.0.true", "cat", r"test_predictions\[0\]\.true: must be 'glioma', 'meningioma', 'notumor' or"),
    ("calibration.refer_thresholds", {"cat": 0.5}, r"calibration\.refer_thresholds\.cat \(key\): must be 'glioma'"),
    ("class_names", ["a", "b", "c", "d"], r"class_names: lists classes \['a', 'b', 'c', 'd'\]"),
    # text: identifiers, control characters, markup (the phishing link and remote image)
    ("name", "../evil", r"name: must be 1-64 ASCII letters, digits, '-' or '_'"),
    ("architecture", "seed`; rm", r"architecture: must be 1-64 ASCII letters"),
    ("description", "Best model. [Log in here](https://evil.example/login)",
     r"description: contains '\]\(': card text may not hold links, images, HTML or backticks"),
    ("description", "![](https://evil.example/pixel.png)", r"description: contains '!\['"),
    ("description", "see https://evil.example", r"description: contains '://'"),
    ("description", "<img src=x onerror=alert(1)>", r"description: contains '<i'"),
    ("machine", "8 cores\x1b[31m", r"machine: contains the control or invisible character U\+001B"),
    ("machine", "gpu\u202eevil", r"machine: contains the control or invisible character U\+202E"),
    (f"{EXT}.membership", "all images, see www.evil.example", r"membership: contains 'www\.'"),
    ("schema_version", "2", r"schema_version must be a whole number >= 1 \(got the text '2'\)"),
]


@pytest.mark.parametrize("path,value,message", PROBES, ids=[f"{p}={v!r}"[:60] for p, v, _ in PROBES])
def test_probe_is_refused_naming_field_and_problem(tmp_path, path, value, message):
    msg = refused(set_at(seed_card(), path, value), tmp_path)
    assert msg.startswith("The model card m.json is refused: "), msg
    assert re.search(message, msg), msg


def test_a_card_holding_more_rows_than_any_evaluation_keeps_is_refused(tmp_path):
    """Every Evaluation page run bootstraps a card's rows: 800,000 made-up rows (under the byte limit) took the
    server's memory down; a card keeps at most MAX_PREDICTION_ROWS per list."""
    from brainclf.model.card_schema.results import MAX_PREDICTION_ROWS

    d = seed_card()
    d["metrics"].pop("test")  # as in the review's card: no figures for the rows to agree with
    d["test_predictions"] = d["test_predictions"][:1] * (MAX_PREDICTION_ROWS + 1)
    assert re.search(rf"test_predictions: must have at most {MAX_PREDICTION_ROWS} items", refused(d, tmp_path))
    d["test_predictions"] = d["test_predictions"][:MAX_PREDICTION_ROWS]
    (tmp_path / "m.json").write_text(json.dumps(d))
    assert len(read_card(tmp_path / "m.keras").test_predictions) == MAX_PREDICTION_ROWS


def test_the_unmodified_probe_base_loads(tmp_path):
    """The probes above fail because of their change, not because of the card they start from."""
    (tmp_path / "m.json").write_text(json.dumps(seed_card()))
    assert read_card(tmp_path / "m.keras").name == "seed"


def test_not_an_object_and_missing_fields_are_refused(tmp_path):
    assert "a card must be a JSON object, got a list of 1" in refused([1], tmp_path)
    d = seed_card()
    del d["file_sha256"], d["input_contract"]
    msg = refused(d, tmp_path)
    assert "input_contract: is missing" in msg and "file_sha256: is missing" in msg


def test_many_problems_are_summarised(tmp_path):
    d = seed_card()
    for i in range(8):
        d["test_predictions"][i]["path"] = f"/abs/{i}.png"
    msg = refused(d, tmp_path)
    assert msg.count("must be a relative path") == 5 and "and 3 more problems" in msg


@pytest.mark.parametrize("change,message", [
    (lambda d: set_at(d, "metrics.test.accuracy", 0.999), r"metrics\.test: accuracy 0\.999000 does not match the "
                                                          r"confusion matrix \(701/1025\)"),
    (lambda d: set_at(d, "metrics.test.n", 2000), r"metrics\.test: confusion_matrix counts 1025 images but n is 2000"),
    (lambda d: set_at(d, "test_predictions", d["test_predictions"][:100]),
     r"test_predictions has 100 rows but metrics\.test\.n is 1025"),
    (lambda d: set_at(d, "test_predictions.0.pred", "pituitary"), r"test_predictions\[0\]: pred is 'pituitary' but"),
    (lambda d: set_at(d, "external_predictions.external-radiopaedia", d["test_predictions"][:3]),
     r"external_predictions\['external-radiopaedia'\] has 3 rows but metrics\.external\['external-radiopaedia'\]\.n"),
])
def test_invented_figures_that_contradict_the_card_are_refused(tmp_path, change, message):
    d = seed_card()
    change(d)
    assert re.search(message, refused(d, tmp_path))


# ---- refused on load_model and add_model, never a traceback -------------------------------------------------
def test_load_model_refuses_a_bad_card_with_a_model_error(smoke_model, tmp_path):
    shutil.copy(smoke_model, tmp_path / "m.keras")
    card = json.loads(card_path(smoke_model).read_text())
    card["metrics"]["test"] = "abc"
    card_path(tmp_path / "m.keras").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"m\.json is refused: metrics\.test: must be a JSON object"):
        load_model(tmp_path / "m.keras")


@pytest.mark.parametrize("path,value", [("test_predictions.0.path", "../../../etc/passwd"),
                                        ("metrics.test.accuracy", "abc"),
                                        ("description", "[phish](https://evil.example)")])
def test_add_model_refuses_a_bad_card_and_nothing_lands(smoke_model, tmp_path, path, value):
    card = set_at(json.loads(card_path(smoke_model).read_text()), path, value)
    dest = tmp_path / "models"
    with pytest.raises(ModelError, match=rf"is refused: {re.escape(path.split('.')[0])}"):
        add_model("up", smoke_model.read_bytes(), json.dumps(card).encode(), dest)
    assert not dest.exists() or not list(dest.iterdir())


def test_layers_named_by_the_card_must_exist_in_the_model(smoke_model, tmp_path):
    shutil.copy(smoke_model, tmp_path / "m.keras")
    good = json.loads(card_path(smoke_model).read_text())
    for field, value, message in [("gradcam_layer", "no_such_layer", "gradcam_layer names no_such_layer"),
                                  ("ood", {**good["ood"], "layers": ["nope"]}, "ood layers names nope"),
                                  ("ood", {**good["ood"], "layers": ["s0b"]}, "OOD guard's statistics have")]:
        card_path(tmp_path / "m.keras").write_text(json.dumps({**good, field: value}))
        with pytest.raises(ModelError, match=message):
            load_model(tmp_path / "m.keras")
    card_path(tmp_path / "m.keras").write_text(json.dumps(good))
    assert load_model(tmp_path / "m.keras")[1].name == "smoke"


def test_a_card_without_ood_layers_for_a_model_unlike_its_architecture_is_a_model_error(smoke_model, tmp_path):
    from brainclf.inference import Predictor

    shutil.copy(smoke_model, tmp_path / "m.keras")
    card = json.loads(card_path(smoke_model).read_text())
    card_path(tmp_path / "m.keras").write_text(json.dumps({**card, "architecture": "seed", "ood": {}}))
    with pytest.raises(ModelError, match="the OOD guard needs layer 'conv2', which the model does not have"):
        Predictor.load(tmp_path / "m.keras")


def test_save_refuses_a_card_that_would_not_load(tmp_path):
    card = ModelCard.from_dict(seed_card())
    card.metrics["test"]["accuracy"] = "abc"
    with pytest.raises(ModelError, match=r"c\.json was not saved: metrics\.test\.accuracy: must be a number"):
        card.save(tmp_path / "c.json")
    assert list(tmp_path.iterdir()) == []


def test_card_json_errors_and_deep_nesting_are_model_errors():
    with pytest.raises(ModelError, match="not valid JSON"):
        card_from_bytes(b"[" * 100_000, "deep.json")
    with pytest.raises(ModelError, match="not valid JSON"):
        card_from_bytes(b"\xff\xfe\x00", "bin.json")


# ---- a card that passes cannot crash the readers --------------------------------------------------------------
def minimal_card() -> dict:
    return {"name": "m", "architecture": "compact_cnn", "input_contract": {"size": 32, "channels": 1},
            "file_sha256": "0" * 64}


@pytest.mark.parametrize("make", [minimal_card, seed_card], ids=["minimal", "bundled-seed"])
def test_readers_of_a_valid_card_do_not_crash(make):
    from brainclf.evaluation import report_from_rows
    from brainclf.presentation import (
        confusion_matrix_figure,
        deletion_figure,
        external_sequence_figure,
        external_view,
        history_figure,
        validated_scope,
    )

    card = ModelCard.from_dict(make())
    for tta in (False, True):
        card.test_metrics(tta)
        rows, _ = card.stored_test_predictions(tta)
        report_from_rows(rows)
    validated_scope(card)
    assert card.contract.shape[0] >= 32
    histories = [m["history"] for m in card.training.get("members", [])] or card.training.get("history")
    if histories:
        history_figure(histories)
    for ext in card.metrics.get("external", {}).values():
        external_view("source", ext)
        external_sequence_figure(ext)
        confusion_matrix_figure(ext["confusion_matrix"])
    if card.faithfulness.get("deletion"):
        deletion_figure(card.faithfulness["deletion"])


# ---- display_text ---------------------------------------------------------------------------------------------
def test_display_text_strips_control_and_invisible_characters_and_cuts():
    assert display_text("ok\x1b[31m red\x00\u202eevil\u200b\nline 2\r\n\tend") == "ok[31m redevil\nline 2\n end"
    assert display_text(None) == "" and display_text(42) == "42"
    cut = display_text("x" * 1000, max_len=10)
    assert cut == "x" * 9 + "…" and len(cut) == 10
    assert display_text("[a](https://x)") == "[a](https://x)"  # plain text: shown with st.text, never as Markdown


def test_every_class_is_a_valid_row_label():
    row = {"path": "Testing/x.png", "true": "glioma", "pred": "glioma", "probs": [1.0, 0.0, 0.0, 0.0]}
    d = {**minimal_card(), "test_predictions": [dict(row, true=c, pred=c, probs=[float(c == k) for k in CLASS_NAMES])
                                                for c in CLASS_NAMES]}
    assert len(ModelCard.from_dict(copy.deepcopy(d)).test_predictions) == len(CLASS_NAMES)


# ---- uploads: provenance and verification -------------------------------------------------------------------
def invented_claim(smoke_model) -> dict:
    """The smoke card with test figures it never measured: 1,000 images at 99.9 %, consistent with each other,
    and no stored rows to contradict them."""
    card = json.loads(card_path(smoke_model).read_text())
    cm = [[250 if i == j else 0 for j in range(4)] for i in range(4)]
    cm[0][1], cm[0][0] = 1, 249
    card["metrics"]["test"] = {"n": 1000, "accuracy": 0.999, "confusion_matrix": cm}
    card["metrics"].pop("test_tta", None)
    card["test_predictions"], card["test_predictions_tta"] = [], []
    card["calibration"]["tta_default"] = False
    card["provenance"] = {"uploaded_by": "admin", "uploaded": "2020-01-01", "metrics_verified": True}  # forged
    return card


def test_add_model_records_provenance_and_replaces_a_forged_one(smoke_model, tmp_path):
    from datetime import datetime

    from brainclf.evaluation import card_is_verified, provenance_note

    upload = invented_claim(smoke_model)
    added = add_model("up", smoke_model.read_bytes(), json.dumps(upload).encode(), tmp_path, uploaded_by="alice")
    card = read_card(added)
    prov = card.provenance
    assert prov["uploaded_by"] == "alice" and prov["metrics_verified"] is False
    assert set(prov) == {"uploaded_by", "uploaded", "metrics_verified"}
    uploaded = datetime.strptime(prov["uploaded"], "%Y-%m-%dT%H:%M:%S%z")
    assert abs((datetime.now().astimezone() - uploaded).total_seconds()) < 120
    assert not card_is_verified(card)
    assert provenance_note(card).startswith("Uploaded by alice on ") and "not verified" in provenance_note(card)
    assert card.metrics["test"] == upload["metrics"]["test"] and card.training == upload["training"]  # kept as claimed
    assert load_model(added)[1].provenance == prov


def test_add_model_makes_an_odd_user_name_a_plain_label(smoke_model, tmp_path):
    model_bytes, card_bytes = smoke_model.read_bytes(), card_path(smoke_model).read_bytes()
    added = add_model("odd", model_bytes, card_bytes, tmp_path, uploaded_by="<b>eve</b>\n[x](https://e.v)\x00")
    who = read_card(added).provenance["uploaded_by"]
    assert who == "beve/b x(httpse.v)"  # still names the user; no tag, link, line break or control character left
    assert read_card(add_model("anon", model_bytes, card_bytes, tmp_path)).provenance["uploaded_by"] is None


def test_trained_and_bundled_models_count_as_verified(smoke_model):
    from brainclf.evaluation import card_is_verified, provenance_note

    for card in (read_card(smoke_model), read_card(REPO / "models" / "seed.keras")):
        assert card.provenance == {} and card_is_verified(card) and provenance_note(card) is None


def test_verify_uploaded_model_replaces_claimed_test_metrics_by_measured_ones(smoke_model, synthetic_dataset,
                                                                              tmp_path):
    from brainclf.evaluation import card_is_verified, provenance_note, verify_uploaded_model

    added = add_model("up", smoke_model.read_bytes(), json.dumps(invented_claim(smoke_model)).encode(), tmp_path,
                      uploaded_by="bob")
    returned = verify_uploaded_model(added, synthetic_dataset)
    card = read_card(added)
    assert card == returned
    test, rows = card.metrics["test"], card.test_predictions
    assert test["n"] == len(rows) == 12 and all(r["path"].startswith("Testing/") for r in rows)  # 3 per class
    assert test["accuracy"] == sum(r["true"] == r["pred"] for r in rows) / 12
    assert "data" not in test and "test_tta" not in card.metrics  # the model runs without TTA: none claimed
    prov = card.provenance
    assert prov["metrics_verified"] is True and prov["uploaded_by"] == "bob" and prov["claimed_test_accuracy"] == 0.999
    assert prov["verified_on"]["counts"] == {c: 3 for c in CLASS_NAMES} and prov["verified_on"]["n"] == 12
    assert prov["verified_on"]["root_name"] == synthetic_dataset.name
    assert re.fullmatch(r"[0-9a-f]{64}", prov["verified_on"]["file_list_sha256"])
    assert card_is_verified(card) and "re-measured on this server (12 images" in provenance_note(card)
    assert load_model(added)[1].file_sha256 == card.file_sha256  # the model still matches its card


def test_verify_measures_tta_figures_when_the_card_has_them(smoke_model, synthetic_dataset, tmp_path):
    from brainclf.evaluation import verify_uploaded_model

    upload = json.loads(card_path(smoke_model).read_text())
    assert upload["metrics"].get("test_tta")
    added = add_model("tta", smoke_model.read_bytes(), json.dumps(upload).encode(), tmp_path)
    card = verify_uploaded_model(added, synthetic_dataset)
    assert card.metrics["test_tta"]["tta"] is True and card.metrics["test"]["tta"] is False
    assert len(card.test_predictions_tta) == card.metrics["test_tta"]["n"] == 12


def test_a_model_removed_while_it_is_re_measured_gets_no_card_back(smoke_model, synthetic_dataset, tmp_path,
                                                                    monkeypatch):
    """Saved back beside no model, the card kept the name from any later upload until someone deleted it."""
    import brainclf.evaluation.provenance as provenance
    from brainclf.evaluation import verify_uploaded_model
    from brainclf.inference import Predictor
    from brainclf.model import remove_model

    added = add_model("gone", smoke_model.read_bytes(), json.dumps(invented_claim(smoke_model)).encode(), tmp_path)
    real = provenance.evaluate_folder

    def evaluate_then_removed(*args, **kwargs):
        report = real(*args, **kwargs)
        remove_model(added, tmp_path)  # an admin, meanwhile
        return report

    monkeypatch.setattr(provenance, "evaluate_folder", evaluate_then_removed)
    predictor = Predictor.load(added)
    with pytest.raises(ModelError, match="removed or replaced while it was re-measured; nothing was recorded"):
        verify_uploaded_model(added, synthetic_dataset, predictor=predictor)
    assert not card_path(added).exists() and not added.exists()


def test_verify_refuses_a_model_that_was_not_uploaded(smoke_model, synthetic_dataset, tmp_path):
    from brainclf.evaluation import verify_uploaded_model

    shutil.copy(smoke_model, tmp_path / "m.keras")
    shutil.copy(card_path(smoke_model), tmp_path / "m.json")
    before = (tmp_path / "m.json").read_bytes()
    with pytest.raises(ModelError, match="was not uploaded"):
        verify_uploaded_model(tmp_path / "m.keras", synthetic_dataset)
    assert (tmp_path / "m.json").read_bytes() == before


RECIPE_RUN_PROBES = [
    ("oops", r"extra\.recipe_run: must be a JSON object"),
    ({"model": "x", "file_sha256": "0" * 64, "external": {"ds": {"accuracy": 0.7}}},
     r"extra\.recipe_run\.external\.ds\.n: is missing"),
    ({"model": "x", "file_sha256": "0" * 64, "external": {"ds": {"n": 5, "accuracy": "high"}}},
     r"extra\.recipe_run\.external\.ds\.accuracy: must be a"),
    ({"model": "x", "file_sha256": "0" * 64, "external": ["ds"]},
     r"extra\.recipe_run\.external: must be a JSON object"),
    ({"model": ":red[**VERIFIED**]", "file_sha256": "0" * 64, "external": {"ds": {"n": 5, "accuracy": 0.5}}},
     r"extra\.recipe_run\.model: must be 1-64 ASCII"),
]


@pytest.mark.parametrize("recipe_run,message", RECIPE_RUN_PROBES, ids=range(len(RECIPE_RUN_PROBES)))
def test_a_malformed_recipe_run_is_refused_on_load(tmp_path, recipe_run, message):
    """The app reads extra.recipe_run's figures for a refit (sidebar, Home, Predict, PDF): checked like the rest."""
    card = seed_card()
    card["extra"] = {"recipe_run": recipe_run, "anything_else": [1, "x"]}
    assert re.search(message, refused(card, tmp_path)), refused(card, tmp_path)


def test_the_bundled_refit_cards_recipe_run_loads_and_other_extra_keys_stay_free(tmp_path):
    card = json.loads((REPO / "models" / "default.json").read_text())
    card["extra"]["notes"] = {"free": ["form"]}
    (tmp_path / "m.json").write_text(json.dumps(card))
    assert read_card(tmp_path / "m.keras").extra["recipe_run"]["model"] == "default_split"


def test_a_site_profile_with_an_empty_scope_is_refused(tmp_path):
    card = seed_card()
    card["site"] = {"name": "st-x", "scope": "", "adapted": False, "target": 0.98}
    assert "site.scope: must not be empty" in refused(card, tmp_path)


def test_a_run_whose_card_could_not_keep_its_rows_is_refused_before_it_works():
    """The row cap is checked when a card is saved, at the end of a training or site step: refused up front."""
    from brainclf.errors import ConfigError
    from brainclf.model.card import check_card_rows
    from brainclf.model.card_schema.results import MAX_PREDICTION_ROWS

    check_card_rows({"the test split": [0] * MAX_PREDICTION_ROWS})
    with pytest.raises(ConfigError, match=rf"held-out part would hold {MAX_PREDICTION_ROWS + 1} images; .* at most"):
        check_card_rows({"the test split": [], "the held-out part": [0] * (MAX_PREDICTION_ROWS + 1)})
