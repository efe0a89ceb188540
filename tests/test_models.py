"""brainclf.model.architectures: the architecture registry and its contract with Grad-CAM and the card."""

from __future__ import annotations

import numpy as np
import pytest

from brainclf.errors import ConfigError
from brainclf.input import InputContract
from brainclf.model.architectures import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURE,
    build_model,
    dtype_policy,
    ensemble_from_members,
    get_architecture,
)


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
    assert {*arch.gradcam_layers, *arch.ood_layers, "logits", "probs"} <= names
    assert model.output_shape == (None, 4)
    assert model.get_layer("logits").output.shape[-1] == 4
    for layer in arch.gradcam_layers:
        assert len(model.get_layer(layer).output.shape) == 4  # a spatial feature map
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


def _logits(model, x):
    import keras

    return np.asarray(keras.Model(model.inputs, model.get_layer("logits").output)(x))


def test_ensemble_averages_the_logits_of_its_members():
    import keras

    arch = get_architecture("compact_cnn_x2")
    contract = InputContract(size=32, channels=1)
    keras.utils.set_random_seed(1)
    members = [build_model(arch.member, contract) for _ in range(arch.members)]
    ensemble = ensemble_from_members(arch, contract, members)
    x = np.random.default_rng(0).random((3, 32, 32, 1), np.float32)
    member_logits = [_logits(m, x) for m in members]
    assert not np.allclose(member_logits[0], member_logits[1])  # different initialisations
    mean = np.mean(member_logits, axis=0)
    assert np.allclose(_logits(ensemble, x), mean, atol=1e-5)
    expected = np.exp(mean) / np.exp(mean).sum(1, keepdims=True)
    assert np.allclose(np.asarray(ensemble(x)), expected, atol=1e-5)
    assert ensemble.count_params() == sum(m.count_params() for m in members)


def test_dtype_policy_applies_inside_and_is_restored():
    import keras

    before = keras.config.dtype_policy().name
    with dtype_policy("mixed_bfloat16"):
        model = build_model("compact_cnn", InputContract(size=32, channels=1))
    assert keras.config.dtype_policy().name == before
    assert model.get_layer("s0a_conv").compute_dtype == "bfloat16"
    assert model.get_layer("s0a_conv").kernel.dtype == "float32"  # weights stay full precision
    assert model.get_layer("probs").compute_dtype == "float32"  # probabilities are never rounded to bf16


def test_resnet_wide_is_resnet_small_wider_and_fits_the_size_budget():
    model = build_model("resnet_wide")
    small = build_model("resnet_small", InputContract(size=128, channels=1))
    assert model.name == "resnet_wide" and model.input_shape == (None, 128, 128, 1)
    assert tuple(model.get_layer("last_conv").output.shape[1:]) == (4, 4, 320)
    assert [layer.name for layer in model.layers] == [layer.name for layer in small.layers]  # same layout
    assert model.count_params() > 2 * small.count_params()
    assert model.count_params() * 4 < 25_000_000  # a bundled model stays under 25 MB of float32 weights


def test_resnet_small_blocks_are_residual():
    import keras

    model = build_model("resnet_small")
    assert model.input_shape == (None, 160, 160, 1)
    assert tuple(model.get_layer("last_conv").output.shape[1:3]) == (5, 5)  # stride 32 overall
    names = {layer.name for layer in model.layers}
    # identity shortcuts inside a stage, a 1x1 projection where the width and stride change
    assert "s0b1_proj" not in names and {"s1b0_proj", "s2b0_proj", "s3b0_proj"} <= names
    assert model.count_params() * 4 < 10_000_000  # the saved float32 weights stay under ~10 MB
    # With its residual branch silenced, an identity block passes its (non-negative, post-ReLU) input through.
    bn = model.get_layer("s0b1b_bn")
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([np.zeros_like(gamma), np.zeros_like(beta), mean, var])
    probe = keras.Model(model.inputs, [model.get_layer("s0b0").output, model.get_layer("s0b1").output])
    block_in, block_out = probe(np.random.default_rng(1).random((2, 160, 160, 1), np.float32))
    assert np.allclose(np.asarray(block_in), np.asarray(block_out), atol=1e-5)


def test_a_model_whose_output_is_not_the_softmax_of_its_logits_is_refused():
    """An upload ending in a sigmoid would show the page (softmax of `logits`) other probabilities than the CLI."""
    import keras

    from brainclf.errors import ModelError
    from brainclf.model.model_checks import check_softmax_output

    def head(final):
        x = keras.Input((8, 8, 1), name="image")
        logits = keras.layers.Dense(4, name="logits")(keras.layers.Flatten()(x))
        return keras.Model(x, keras.layers.Activation(final, name="probs")(logits) if final else logits)

    check_softmax_output(head("softmax"), "good.keras")  # no error
    for final in ("sigmoid", None):
        with pytest.raises(ModelError, match="not the softmax of its 'logits' layer"):
            check_softmax_output(head(final), "odd.keras")
    x = keras.Input((8, 8, 1))
    nameless = keras.Model(x, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(x)))
    with pytest.raises(ModelError, match="no layer named 'logits'"):
        check_softmax_output(nameless, "nameless.keras")
