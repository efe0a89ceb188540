"""The validated scope read from a card."""

from brainclf.model import ModelCard
from brainclf.presentation import case_scope_line, external_summary, validated_scope


def card(**kw) -> ModelCard:
    return ModelCard(name="m", architecture="seed", input_contract={"size": 32, "channels": 1}, **kw)


def test_a_kaggle_only_card_says_it_is_in_distribution_only():
    c = card(training={"fingerprint": {"root_name": "brain-tumor-mri",
                                       "counts": {"train": {"glioma": 3, "meningioma": 2, "notumor": 1,
                                                            "pituitary": 0}}}})
    scope = validated_scope(c)
    assert scope["sources"] == ["brain-tumor-mri"] and scope["classes"] == ["glioma", "meningioma", "notumor"]
    assert "in-distribution only" in scope["sentence"]


def test_a_multi_source_card_lists_sources_sequences_and_licences():
    ext = {"n": 1200, "accuracy": 0.9, "by_sequence": {"T1": {}, "T2": {}, "unknown": {}}}
    c = card(training={"sources": [{"name": "a", "primary": True, "licence": "CC0"},
                                   {"name": "b", "licence": "CC BY-NC-SA 3.0",
                                    "fingerprint": {"counts": {"train": {"glioma": 4, "pituitary": 0}}}}]},
             metrics={"external": {"b": ext}})
    scope = validated_scope(c)
    assert scope["sources"] == ["a", "b"] and scope["sequences"] == ["T1", "T2"]
    assert "b (1,200 images, 90.0 % accurate)" in scope["sentence"] and "CC BY-NC-SA 3.0" in scope["licences"]


def test_the_case_line_leads_with_other_sources_and_says_plainly_when_never_measured():
    """Issue #27: nothing on a case said how the model does on scans from another source."""
    ext = {"n": 427, "accuracy": 0.7494, "membership": "held-out case groups", "case_grouping_bits": 25}
    sources = {"sources": [{"name": "kaggle", "primary": True}, {"name": "radiopaedia"}]}
    c = card(training=sources, metrics={"test": {"accuracy": 0.987}, "external": {"radiopaedia": ext}})
    line = case_scope_line(c)
    assert line.startswith("Scope: brain MRI slices like those of kaggle and radiopaedia.")
    assert "Measured on other sources' scans: 74.9 % right (427 slices of radiopaedia)" in line
    assert line.index("74.9 %") < line.index("on the Kaggle test split 98.7 % (in-distribution)")
    # A split whose case groups joined only re-encodings of a slice (no case_grouping_bits recorded): "≤".
    loose = card(training=sources, metrics={"test": {"accuracy": 0.987},
                                            "external": {"radiopaedia": dict(ext, case_grouping_bits=None)}})
    assert "Measured on other sources' scans: ≤ 74.9 % right (427 slices of radiopaedia)" in case_scope_line(loose)
    assert "radiopaedia (427 images, ≤ 74.9 % accurate)" in validated_scope(loose)["sentence"]  # Predict, Home, PDF
    assert "radiopaedia (427 images, 74.9 % accurate)" in validated_scope(c)["sentence"]
    never = case_scope_line(card(metrics={"test": {"accuracy": 0.99}}))
    assert "Not measured on any other source" in never and "99.0 %" in never
    assert external_summary(card()) is None


def test_several_other_sources_are_pooled_by_their_size():
    c = card(metrics={"external": {"a": {"n": 100, "accuracy": 0.9}, "b": {"n": 300, "accuracy": 0.5}}})
    assert external_summary(c)["n"] == 400 and abs(external_summary(c)["accuracy"] - 0.6) < 1e-12


def test_an_uploads_figures_read_as_its_uploaders_claim_and_only_the_test_split_becomes_measured():
    from brainclf.presentation import model_choice_label

    ext = {"n": 10, "accuracy": 0.9, "membership": "held-out"}
    kw = dict(training={"sources": [{"name": "kaggle", "primary": True}, {"name": "ext"}]},
              metrics={"test": {"accuracy": 0.98}, "external": {"ext": ext}})
    claimed = card(provenance={"uploaded_by": "x", "metrics_verified": False}, **kw)
    line = case_scope_line(claimed)
    assert "Claimed by its uploader (not measured here) on other sources' scans" in line
    assert "(in-distribution, claimed by the uploader, not verified)" in line
    verified = card(provenance={"uploaded_by": "x", "metrics_verified": True}, **kw)
    line = case_scope_line(verified)
    assert "Claimed by its uploader" in line and "98.0 % (in-distribution)." in line
    label = model_choice_label("up", verified, True)
    assert label.index("other source 90.0 % of ") < label.index("; Kaggle test 98.0 % (in-distribution))")
    assert " claimed, not verified" in label
    assert "Measured on other sources' scans" in case_scope_line(card(**kw))  # trained here


def test_a_case_line_names_a_few_sources_and_counts_the_rest_so_it_fits_a_report_page():
    sources = [{"name": "kaggle", "primary": True}] + [{"name": f"hospital-{i}"} for i in range(20)]
    line = case_scope_line(card(training={"sources": sources}))
    assert "like those of kaggle, hospital-0, hospital-1 and 18 more." in line and "hospital-5" not in line
    two = case_scope_line(card(training={"sources": sources[:2]}))
    assert "like those of kaggle and hospital-0." in two


def test_an_uploaded_site_profile_reads_as_its_uploaders_claim():
    site = {"name": "clinic", "scope": "validated at clinic: 97.0 % right on 300 held-out slices", "adapted": False,
            "target": 0.98}
    uploaded = card(site=site, provenance={"uploaded_by": "x", "metrics_verified": True})
    assert "Scope: Claimed by its uploader (not measured here): validated at clinic" in case_scope_line(uploaded)
    assert validated_scope(uploaded)["sentence"].startswith("Claimed by its uploader")
    assert case_scope_line(card(site=site)).startswith("Scope: Validated at clinic: 97.0 %")


def test_the_sensitivity_table_has_external_columns_only_where_recorded_and_is_empty_without_test_rows():
    """Home built its table from the test rows and called set_index on it: a card without stored test predictions
    (an upload's claim) made an empty frame without that column and the page failed."""
    from brainclf.presentation import sensitivity_rows

    assert sensitivity_rows([], [], "") == []
    from brainclf import CLASS_NAMES

    rows = [{"true": t, "pred": p, "probs": [0.7 if c == p else 0.1 for c in CLASS_NAMES]} for t, p in
            [("glioma", "glioma"), ("notumor", "notumor"), ("meningioma", "glioma"), ("pituitary", "pituitary")]]
    table = {r["finding"]: r for r in sensitivity_rows(rows, [], "")}
    assert table["Glioma"]["sensitivity (Kaggle)"] == "100.0 %" and table["Glioma"]["specificity (Kaggle)"] == "66.7 %"
    assert not any("external" in k for r in table.values() for k in r)
    ext = [{"finding": "glioma", "sensitivity": 0.5, "specificity": 0.9}]
    with_ext = {r["finding"]: r for r in sensitivity_rows(rows, ext, "external-radiopaedia")}
    assert with_ext["Glioma"]["sensitivity (external-radiopaedia)"] == "50.0 %"
    assert with_ext["Meningioma"]["sensitivity (external-radiopaedia)"] == "—"


def test_the_models_table_gives_other_source_accuracy_before_the_test_split_and_names_a_split_run():
    from brainclf.presentation import model_row

    ext = {"n": 427, "accuracy": 0.7494}
    own = model_row("m", card(metrics={"test": {"accuracy": 0.987}, "external": {"radiopaedia": ext}}), True, False)
    columns = list(own)
    assert columns.index("other-source accuracy") < columns.index("test split accuracy (in-distribution)")
    assert own["other-source accuracy"] == "74.9\u00a0% of 427 radiopaedia"
    assert own["test split accuracy (in-distribution)"] == "98.7\u00a0%"
    refit = card(metrics={"test": {"accuracy": 0.98}}, extra={"recipe_run": {"model": "m_split", "external": {
        "radiopaedia": ext, "other": {"n": 1000, "accuracy": 0.5}}}})
    assert model_row("m", refit, True, False)["other-source accuracy"] == \
        "74.9\u00a0% of 427 radiopaedia; 50.0\u00a0% of 1,000 other (split run)"
    assert model_row("m", card(), True, False)["other-source accuracy"] == "never checked"
    # A model with in-distribution figures only does not read as a plain research model.
    assert model_row("m", card(metrics={"test": {"accuracy": 0.99}}), True, False)["use"] == \
        "research: never checked on another source"
    assert own["use"] == "research"
    from brainclf.presentation import model_choice_label

    assert "other source never checked; Kaggle test 99.0 %" in model_choice_label(
        "m", card(metrics={"test": {"accuracy": 0.99}}), verified=True)


def test_a_site_models_external_figures_are_measured_here_even_for_an_upload():
    """A profile of an upload shows its site's held-out figure, measured by the site steps: not "claimed"."""
    from types import SimpleNamespace

    from brainclf.model.card import SITE_STEP, ModelCard
    from brainclf.presentation.scope import claim_words

    def card(provenance, site):
        made = SimpleNamespace(provenance=provenance, site=site)
        made.measured_site = ModelCard.measured_site.fget(made)
        return made

    upload = {"uploaded_by": "eve", "uploaded": "2026-12-07", "metrics_verified": False}
    profile = {**upload, "metrics_verified": True, "verified_by": SITE_STEP}
    assert claim_words(card(upload, {}), external=True).startswith(", claimed")
    assert claim_words(card(profile, {"name": "clinic"}), external=True) == ""
    assert claim_words(card({}, {}), external=True) == ""
    # A site block an uploader wrote into the card (installed before add_model dropped it) stays a claim.
    assert claim_words(card(upload, {"name": "clinic"}), external=True).startswith(", claimed")
