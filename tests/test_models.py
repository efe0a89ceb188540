"""brainclf.models: the architecture registry and its contract with Grad-CAM and the card."""

from __future__ import annotations

import numpy as np
import pytest

from brainclf.errors import ConfigError
from brainclf.models import ARCHITECTURES, DEFAULT_ARCHITECTURE, GRADCAM_LAYER, build_model, get_architecture
from brainclf.preprocess import InputContract


def trainable_count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_seed_model_matches_the_study():
    model = build_model("seed")
    assert model.input_shape == (None, 120, 120, 3)
    assert model.count_params() == 2364
    assert trainable_count(model) == 2308


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_builds_with_required_layers(name):
    arch = get_architecture(name)
    assert arch.name == name and arch.description
    model = build_model(name, InputContract(size=64, channels=arch.default_contract.channels))
    names = {layer.name for layer in model.layers}
    assert {GRADCAM_LAYER, "logits", "probs"} <= names
    assert model.output_shape == (None, 4)
    assert model.get_layer("logits").units == 4
    assert len(model.get_layer(GRADCAM_LAYER).output.shape) == 4  # a spatial feature map
    probs = np.asarray(model(np.random.default_rng(0).random((2, 64, 64, model.input_shape[-1]), np.float32)))
    assert probs.shape == (2, 4)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_default_contract_is_used():
    model = build_model(DEFAULT_ARCHITECTURE)
    assert model.input_shape == (None, *ARCHITECTURES[DEFAULT_ARCHITECTURE].default_contract.shape)


def test_custom_contract_sets_input_shape():
    assert build_model("compact_cnn", InputContract(size=48, channels=3)).input_shape == (None, 48, 48, 3)


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        build_model("resnet9000")
    for name in ARCHITECTURES:
        assert name in str(e.value)
    assert "resnet9000" in str(e.value)


@pytest.mark.parametrize("size", [0, 16, 31, 1025])
def test_bad_size(size):
    with pytest.raises(ConfigError, match="Input size"):
        build_model("compact_cnn", InputContract(size=size, channels=1))


@pytest.mark.parametrize("channels", [0, 2, 4])
def test_bad_channels(channels):
    with pytest.raises(ConfigError, match="Channels"):
        build_model("seed", InputContract(size=64, channels=channels))
