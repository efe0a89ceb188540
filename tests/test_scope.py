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
    ext = {"n": 427, "accuracy": 0.7494, "membership": "held-out case groups"}
    c = card(training={"sources": [{"name": "kaggle", "primary": True}, {"name": "radiopaedia"}]},
             metrics={"test": {"accuracy": 0.987}, "external": {"radiopaedia": ext}})
    line = case_scope_line(c)
    assert line.startswith("Scope: brain MRI slices like those of kaggle and radiopaedia.")
    assert "Measured on other sources' scans: 74.9 % right (427 slices of radiopaedia)" in line
    assert line.index("74.9 %") < line.index("on the Kaggle test split 98.7 % (in-distribution)")
    never = case_scope_line(card(metrics={"test": {"accuracy": 0.99}}))
    assert "Not measured on any other source" in never and "99.0 %" in never
    assert external_summary(card()) is None


def test_several_other_sources_are_pooled_by_their_size():
    c = card(metrics={"external": {"a": {"n": 100, "accuracy": 0.9}, "b": {"n": 300, "accuracy": 0.5}}})
    assert external_summary(c)["n"] == 400 and abs(external_summary(c)["accuracy"] - 0.6) < 1e-12
