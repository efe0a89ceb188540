"""brainclf.inference.predict: the Predictor used by the CLI and the app."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from brainclf import CLASS_NAMES, DISPLAY_NAMES
from brainclf.errors import ImageError
from brainclf.inference import Prediction, Predictor
from brainclf.model import read_card


def test_prediction_is_stamped_with_the_card(smoke_predictor, smoke_model, make_image, png_bytes):
    card = read_card(smoke_model)
    pred = smoke_predictor.predict(png_bytes(make_image("glioma")), name="up.png")
    assert pred.model_name == card.name == "smoke"
    assert pred.model_version == card.version and pred.model_version
    assert pred.name == "up.png"
    row = pred.as_row()
    assert row["model"] == "smoke" and row["model_version"] == card.version
    assert row["file"] == "up.png" and row["prediction"] == pred.predicted
    assert [k for k in row if k.startswith("p_")] == [f"p_{c}" for c in CLASS_NAMES]


def test_probabilities_are_a_distribution(smoke_predictor, make_image, png_bytes):
    for cls in CLASS_NAMES:
        pred = smoke_predictor.predict(png_bytes(make_image(cls, seed=7)))
        assert list(pred.probabilities) == list(CLASS_NAMES)
        assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(0.0 <= p <= 1.0 for p in pred.probabilities.values())
        assert pred.confidence == max(pred.probabilities.values())
        assert pred.predicted_index == CLASS_NAMES.index(pred.predicted)
        assert pred.predicted_display == DISPLAY_NAMES[pred.predicted]
        assert pred.model_input.shape == smoke_predictor.contract.shape


def test_bytes_path_and_pil_give_the_same_result(smoke_predictor, make_image, tmp_path):
    img = make_image("pituitary", seed=11)
    path = tmp_path / "slice.png"
    img.save(path)
    a = smoke_predictor.predict(path.read_bytes())
    b = smoke_predictor.predict(path)
    c = smoke_predictor.predict(str(path))
    d = smoke_predictor.predict(Image.open(path))
    for other in (b, c, d):
        assert np.allclose(list(a.probabilities.values()), list(other.probabilities.values()), atol=1e-6)
        assert np.array_equal(a.model_input, other.model_input)


@pytest.mark.parametrize("data", [b"", b"GIF89a-but-not-really", b"%PDF-1.5 ...", b"hello"])
def test_bad_bytes_raise_image_error(smoke_predictor, data):
    with pytest.raises(ImageError):
        smoke_predictor.predict(data, name="bad.jpg")


def test_predict_arrays_batches_and_single(smoke_predictor):
    rng = np.random.default_rng(0)
    x = rng.random((10, *smoke_predictor.contract.shape), np.float32)
    whole = smoke_predictor.predict_arrays(x)
    small_batches = smoke_predictor.predict_arrays(x, batch_size=3)
    assert whole.shape == (10, 4)
    assert np.allclose(whole, small_batches, atol=1e-5)
    assert np.allclose(smoke_predictor.predict_arrays(x[0]), whole[:1], atol=1e-5)  # (H, W, C) accepted
    assert smoke_predictor.predict_arrays(x[:0]).shape == (0, 4)


def test_concurrent_predictions_match_serial(smoke_predictor, make_image, png_bytes):
    images = [png_bytes(make_image(CLASS_NAMES[i % 4], seed=100 + i)) for i in range(16)]
    serial = [smoke_predictor.predict(b, name=str(i)).probabilities for i, b in enumerate(images)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda ib: smoke_predictor.predict(ib[1], name=str(ib[0])).probabilities,
                                 enumerate(images)))
    for s, p in zip(serial, parallel):
        assert np.allclose(list(s.values()), list(p.values()), atol=1e-6)


def test_predictor_load_and_preprocess(smoke_model, make_image):
    predictor = Predictor.load(smoke_model)
    assert predictor.card.name == "smoke"
    x = predictor.preprocess(make_image().resize((80, 40)))
    assert x.shape == (32, 32, 1) and x.dtype == np.float32


def test_prediction_properties():
    p = Prediction("f", {"glioma": 0.1, "meningioma": 0.2, "notumor": 0.6, "pituitary": 0.1}, "m", "v1")
    assert p.predicted == "notumor" and p.predicted_index == 2 and p.confidence == 0.6
    assert p.predicted_display == "No tumour"


def test_flip_tta_averages_with_the_mirrored_slice(smoke_predictor):
    x = np.random.default_rng(3).random((2, *smoke_predictor.contract.shape), np.float32)
    plain = smoke_predictor.raw_probs(x, tta=False)
    mirrored = smoke_predictor.raw_probs(x[:, :, ::-1], tta=False)
    # The loaded predictor runs as its card says; with_tta returns a copy, the shared one is unchanged.
    assert smoke_predictor.tta is smoke_predictor.card.tta_default
    on, off = smoke_predictor.with_tta(True), smoke_predictor.with_tta(False)
    assert on.tta and not off.tta and smoke_predictor.tta is smoke_predictor.card.tta_default
    assert smoke_predictor.with_tta(smoke_predictor.tta) is smoke_predictor
    assert np.allclose(on.raw_probs(x), (plain + mirrored) / 2, atol=1e-6)
    assert np.allclose(off.raw_probs(x), plain, atol=1e-6)


def test_predict_arrays_applies_the_cards_temperature(smoke_predictor):
    from brainclf.scoring import apply_temperature

    x = np.random.default_rng(4).random((3, *smoke_predictor.contract.shape), np.float32)
    cal = smoke_predictor.card.calibration
    for tta, key in ((False, "temperature"), (True, "temperature_tta")):
        p = smoke_predictor.with_tta(tta)
        t = p.temperature
        assert t > 0
        assert t == pytest.approx(cal[key])  # each mode has its own temperature, fitted on validation
        assert np.allclose(p.predict_arrays(x), apply_temperature(p.raw_probs(x), t), atol=1e-6)


def test_ood_features_come_from_the_cards_layers(smoke_predictor, smoke_model):
    import dataclasses

    from brainclf.inference import Predictor
    from brainclf.model import get_architecture, load_model

    layers = smoke_predictor.ood_layers
    assert layers == tuple(smoke_predictor.card.ood["layers"]) == get_architecture("compact_cnn").ood_layers
    model = smoke_predictor.model
    # Mean and std per channel of every OOD layer, in order.
    width = sum(2 * model.get_layer(name).output.shape[-1] for name in layers)
    x = np.random.default_rng(5).random((3, *smoke_predictor.contract.shape), np.float32)
    _, feats = smoke_predictor.raw_probs_and_features(x)
    assert feats.shape == (3, width)
    # An older card naming a single "layer" still works, with that layer's features only.
    m, card = load_model(smoke_model)
    legacy = Predictor(m, dataclasses.replace(card, ood={"layer": "s1b"}))
    assert legacy.ood_layers == ("s1b",)
    assert legacy.raw_probs_and_features(x)[1].shape == (3, 2 * model.get_layer("s1b").output.shape[-1])


@pytest.mark.parametrize("tta", [False, True])
def test_explained_prediction_matches_separate_prediction_and_gradcam(smoke_predictor, make_image, tta):
    p = smoke_predictor.with_tta(tta)
    img = make_image("pituitary", seed=4)
    plain = p.predict(img, name="a")
    explained = p.predict(img, name="a", explain=True)
    assert plain.heatmap is None
    assert explained.predicted == plain.predicted
    for c in CLASS_NAMES:
        assert explained.probabilities[c] == pytest.approx(plain.probabilities[c], abs=1e-5)
    assert explained.ood_score == pytest.approx(plain.ood_score, rel=1e-4, abs=1e-4)
    assert np.allclose(explained.heatmap, p.gradcam(plain.model_input, plain.predicted_index), atol=1e-5)
    probs, heat = p.explain_arrays(plain.model_input[None])
    assert np.allclose(probs, p.predict_arrays(plain.model_input[None]), atol=1e-5)
    assert heat.shape == (1, *plain.model_input.shape[:2])


def test_tta_copies_share_one_compiled_gradcam(smoke_predictor, make_image):
    # The app asks for a with_tta() copy on every rerun: it must not rebuild and retrace Grad-CAM each time.
    flipped = [smoke_predictor.with_tta(not smoke_predictor.tta) for _ in range(2)]
    x = smoke_predictor.preprocess(make_image("glioma", seed=9))
    flipped[0].gradcam(x)
    assert flipped[1]._gradcam_function() is flipped[0]._gradcam_function() is smoke_predictor._gradcam_function()


def test_tta_heatmap_explains_the_reported_class_when_the_flip_changes_it(smoke_predictor, make_image):
    img = make_image("glioma", seed=2)
    x = smoke_predictor.preprocess(img)
    unflipped = int(smoke_predictor.raw_probs(x, tta=False).argmax())
    other = (unflipped + 1) % len(CLASS_NAMES)
    real_forward = smoke_predictor._forward_both

    class Probs:
        def __init__(self, a):
            self.a = a

        def numpy(self):
            return self.a

    def mirrored_slice_says_other(batch):  # the flipped pass votes for another class, outvoting the first
        _, feats = real_forward(batch)
        return Probs(np.eye(len(CLASS_NAMES), dtype=np.float32)[[other] * len(batch)]), feats

    p = object.__new__(Predictor)
    p.__dict__.update(smoke_predictor.__dict__)
    p.tta, p._forward_both = True, mirrored_slice_says_other
    pred = p.predict(img, name="x", explain=True)
    assert pred.predicted_index == other
    assert np.allclose(pred.heatmap, smoke_predictor.gradcam(x, other), atol=1e-5)
    _, heat = p.explain_arrays(x)  # a single (H, W, C) input is accepted too
    assert np.allclose(heat[0], pred.heatmap, atol=1e-5)


def test_a_model_whose_output_is_not_a_number_is_flagged_and_referred_never_answered(smoke_model, make_image,
                                                                                    png_bytes):
    """A broken model (here a NaN weight) must not yield an accepted answer: max() over NaNs picks a class and
    NaN < threshold is False, so the refer rule fails closed and the slice is flagged."""
    from brainclf.presentation import refer_rule

    predictor = Predictor.load(smoke_model)
    dense = [layer for layer in predictor.model.layers if layer.__class__.__name__ == "Dense"][-1]
    kernel, *rest = dense.get_weights()
    dense.set_weights([np.full_like(kernel, np.nan), *rest])
    pred = predictor.predict(png_bytes(make_image()), name="x.png")
    assert np.isnan(pred.confidence) and pred.referred and pred.out_of_distribution
    assert "not a number" in pred.ood_reason
    assert refer_rule(predictor.refer_thresholds, None).referred(pred.probabilities)
    row = predictor.prediction_from_probs("x", np.full(len(CLASS_NAMES), np.nan))
    assert row.referred and row.out_of_distribution


def test_ood_check_flags_features_that_are_not_numbers():
    from brainclf.inference.ood import check

    stats = {"means": [[0.0] * 4], "precision": np.eye(4).tolist(), "threshold": 3.0}
    flagged, reason, _ = check(None, np.full(4, np.nan), stats)
    assert flagged and "not numbers" in reason
    assert not check(None, np.zeros(4), stats)[0]


def test_an_output_with_one_nan_among_numbers_is_referred():
    """max() skips a NaN that is not first: [0.97, nan, 0.02, 0.01] must not read as an answer at 0.97."""
    from brainclf.presentation import refer_rule

    probs = dict(zip(CLASS_NAMES, [0.97, float("nan"), 0.02, 0.01]))
    pred = Prediction(name="x", probabilities=probs, model_name="m", model_version="1", refer_threshold=0.9)
    assert pred.confidence == 0.97 and pred.referred
    assert refer_rule({c: 0.9 for c in CLASS_NAMES}, None).referred(probs)
    assert not Prediction(name="x", probabilities=dict(zip(CLASS_NAMES, [0.97, 0.01, 0.01, 0.01])),
                          model_name="m", model_version="1", refer_threshold=0.9).referred


def test_a_flagged_slice_is_no_answer_in_its_csv_row_and_audit_line_whatever_its_confidence():
    from brainclf.serving.audit import audit_record

    sure = {c: 0.97 if c == "glioma" else 0.01 for c in CLASS_NAMES}
    answered = Prediction("a.png", sure, "m", "v1", refer_threshold=0.9)
    flagged = Prediction("b.png", sure, "m", "v1", refer_threshold=0.9, out_of_distribution=True)
    assert not answered.as_row()["refer"] and not audit_record(b"a", answered)["output"]["refer"]
    assert flagged.as_row()["refer"] and flagged.as_row()["out_of_distribution"]
    assert audit_record(b"b", flagged)["output"]["refer"]


@pytest.mark.parametrize("bar", [0.9, 0.9719, 1.0])
def test_a_confidence_at_the_refer_bar_is_answered_and_one_step_below_it_is_referred(bar):
    """The rule is 'refer below the bar': a confidence equal to it is answered (a bar of 1.0 answers a saturated
    1.0, the cut the curves counted as passing); the next float below it is referred."""
    def prediction(confidence: float) -> Prediction:
        probs = dict(zip(CLASS_NAMES, [confidence, *[(1 - confidence) / 3] * 3]))
        return Prediction("x.png", probs, "m", "v1", refer_threshold=bar)

    assert prediction(bar).confidence == bar and not prediction(bar).referred
    below = float(np.nextafter(bar, 0))
    assert prediction(below).confidence == below and prediction(below).referred
    assert prediction(bar).as_row()["refer"] is False and prediction(below).as_row()["refer"] is True
