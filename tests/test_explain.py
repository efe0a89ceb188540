"""brainclf.inference.explain: Grad-CAM heatmaps and their overlay."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from brainclf.inference import GradCam, jet_colormap, overlay_heatmap
from brainclf.input import InputContract
from brainclf.model import build_model


@pytest.fixture(scope="module")
def seed_model():
    keras.utils.set_random_seed(1)
    return build_model("seed", InputContract(size=64, channels=1))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = rng.random((3, 64, 64, 1)).astype(np.float32) * 0.3
    x[:, 10:30, 35:55] = 1.0  # a bright patch
    return x


def test_heatmap_shape_and_range(seed_model, images):
    cam = GradCam(seed_model)
    heat = cam(images[0])
    assert heat.shape == (64, 64)
    assert np.isfinite(heat).all()
    assert heat.min() >= 0.0 and heat.max() <= 1.0 + 1e-6


def test_class_index_changes_the_map(seed_model, images):
    cam = GradCam(seed_model)
    maps = [cam(images[0], class_index=i) for i in range(4)]
    assert all(m.shape == (64, 64) for m in maps)
    assert any(not np.allclose(maps[0], m, atol=1e-4) for m in maps[1:])


def test_default_class_is_the_predicted_one(seed_model, images):
    cam = GradCam(seed_model)
    heats, probs = cam.batch(images)
    assert heats.shape == (3, 64, 64) and probs.shape == (3, 4)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.allclose(probs, np.asarray(seed_model(images)), atol=1e-5)  # the same pass yields the prediction
    predicted = probs.argmax(1)
    explicit, _ = cam.batch(images, predicted)
    assert np.allclose(heats, explicit, atol=1e-6)
    assert np.allclose(GradCam(seed_model)(images[1]), heats[1], atol=1e-5)  # one image = its row of a batch


def test_gradcam_on_trained_model_via_predictor(smoke_predictor, make_image):
    x = smoke_predictor.preprocess(make_image("meningioma"))
    heat = smoke_predictor.gradcam(x)
    assert heat.shape == (32, 32)
    assert 0.0 <= heat.min() and heat.max() <= 1.0 + 1e-6
    assert smoke_predictor.gradcam(x, class_index=2).shape == (32, 32)


def test_ensemble_map_of_identical_members_equals_the_member_map(images):
    # Two copies of one network: the averaged logit is that network's logit, each copy gets half the
    # gradient, and the summed maps must reproduce the single network's Grad-CAM exactly.
    from brainclf.model import ensemble_from_members, get_architecture

    arch = get_architecture("compact_cnn_x2")
    contract = InputContract(size=64, channels=1)
    keras.utils.set_random_seed(3)
    member = build_model(arch.member, contract)
    ensemble = ensemble_from_members(arch, contract, [member] * arch.members)
    single, p_single = GradCam(member).batch(images)
    both, p_both = GradCam(ensemble, list(arch.gradcam_layers)).batch(images)
    assert np.allclose(p_single, p_both, atol=1e-5)
    assert np.allclose(single, both, atol=1e-4)
    # One member's map alone does not explain the ensemble's score: refused, not silently partial.
    with pytest.raises(ValueError, match="every path to the logits"):
        GradCam(ensemble, arch.gradcam_layers[0])


def test_ensemble_map_of_different_members_matches_gradients_through_the_whole_model(images):
    import tensorflow as tf

    from brainclf.model import ensemble_from_members, get_architecture

    arch = get_architecture("compact_cnn_x2")
    contract = InputContract(size=64, channels=1)
    keras.utils.set_random_seed(5)
    ensemble = ensemble_from_members(arch, contract, [build_model(arch.member, contract) for _ in range(2)])
    heat, probs = GradCam(ensemble, list(arch.gradcam_layers)).batch(images)
    # Reference: the keras-io recipe on the whole, untouched model, both members' maps, summed before ReLU.
    ref_model = keras.Model(ensemble.inputs, [[ensemble.get_layer(n).output for n in arch.gradcam_layers],
                                              ensemble.get_layer("logits").output])
    with tf.GradientTape() as tape:
        maps, logits = ref_model(images, training=False)
        score = tf.gather(logits, probs.argmax(1), axis=1, batch_dims=1)
    grads = tape.gradient(score, maps)
    parts = [tf.reduce_sum(tf.reduce_mean(g, axis=(1, 2), keepdims=True) * m, -1, keepdims=True)
             for m, g in zip(maps, grads)]

    def normalised(cam):
        cam = tf.image.resize(tf.nn.relu(cam), (64, 64), method="bilinear")[..., 0].numpy()
        return cam / np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-12)

    assert np.allclose(heat, normalised(parts[0] + parts[1]), atol=1e-4)
    assert not np.allclose(heat, normalised(parts[0]), atol=1e-2)  # member 1 really contributes


def test_missing_layer_is_reported(seed_model):
    with pytest.raises(ValueError, match="no_such_layer"):  # the layer asked for is named
        GradCam(seed_model, "no_such_layer")


def test_overlay_heatmap(images):
    heat = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    out = overlay_heatmap(images[0], heat)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # where the heat is zero, the image is shown unchanged (gray: R == G == B)
    assert out[0, 0, 0] == out[0, 0, 1] == out[0, 0, 2] == round(float(images[0, 0, 0, 0]) * 255)
    rgb = overlay_heatmap(np.zeros((20, 30, 3)), np.ones((20, 30)), opacity=1.0)
    assert rgb.shape == (20, 30, 3)
    assert tuple(rgb[0, 0]) == (128, 0, 0)  # jet(1) is dark red
    assert overlay_heatmap(np.zeros((8, 8)), np.zeros((8, 8))).shape == (8, 8, 3)


def test_jet_colormap_endpoints():
    c = jet_colormap(np.array([0.0, 0.5, 1.0, 2.0]))
    assert c.shape == (4, 3)
    assert np.allclose(c[0], [0, 0, 0.5]) and np.allclose(c[1], [0.5, 1, 0.5]) and np.allclose(c[2], [0.5, 0, 0])
    assert np.allclose(c[3], c[2])  # clipped
