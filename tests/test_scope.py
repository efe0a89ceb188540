"""The validated scope read from a card."""

from brainclf.card import ModelCard
from brainclf.scope import validated_scope


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
    assert "b (1,200 images, 90% accurate)" in scope["sentence"] and "CC BY-NC-SA 3.0" in scope["licences"]
