"""The optional input-contract steps: crop to the head, scale the head's intensities (brainclf.input.framing, run by
brainclf.input.preprocess.to_model_input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from brainclf.errors import ConfigError, ModelError
from brainclf.input import InputContract, head_box, to_model_input
from brainclf.model import read_card
from brainclf.training import TrainConfig

PLAIN = InputContract(size=64, channels=1)
CROPPED = InputContract(size=64, channels=1, crop="head")
SCALED = InputContract(size=64, channels=1, intensity="head-p99")


def small_head(level: int = 200, caption: bool = False) -> Image.Image:
    """A 400x300 black frame with an elliptical 'head' of 80x100 px off centre (a wide field of view)."""
    img = Image.new("L", (400, 300), 0)
    draw = ImageDraw.Draw(img)
    draw.ellipse((40, 30, 120, 130), fill=level)
    draw.ellipse((70, 60, 90, 80), fill=level // 2)  # something inside, so the head is not flat
    if caption:
        draw.line((0, 290, 399, 290), fill=255)  # a one-pixel ruler across the screenshot
    return img


def head_share(x: np.ndarray) -> float:
    return float((x[..., 0] > 0.1).mean())


def test_head_crop_makes_a_small_head_fill_the_frame():
    plain, cropped = to_model_input(small_head(), PLAIN), to_model_input(small_head(), CROPPED)
    assert plain.shape == cropped.shape == (64, 64, 1)
    assert head_share(plain) < 0.1
    assert head_share(cropped) > 0.45  # the ellipse in its (square) bounding box: ~0.55


def test_head_box_ignores_thin_captions_and_rulers():
    left, top, right, bottom = head_box(np.asarray(small_head(caption=True)))
    assert 30 <= left <= 40 and 20 <= top <= 30 and 120 <= right <= 130 and 130 <= bottom <= 140


@pytest.mark.parametrize("img", [Image.new("L", (100, 80), 0), Image.new("L", (100, 80), 128)])
def test_blank_or_uniform_images_are_left_as_they_are(img):
    if img.getextrema()[1] == 0:
        assert head_box(np.asarray(img)) is None
    np.testing.assert_array_equal(to_model_input(img, CROPPED), to_model_input(img, PLAIN))


def test_head_p99_makes_windowing_irrelevant():
    dim, bright = to_model_input(small_head(level=90), SCALED), to_model_input(small_head(level=220), SCALED)
    assert dim.max() == pytest.approx(1.0) and bright.max() == pytest.approx(1.0)
    np.testing.assert_allclose(dim, bright, atol=0.03)
    assert to_model_input(Image.new("L", (64, 64), 0), SCALED).max() == 0.0  # black stays black, no NaN


def test_a_card_without_the_new_steps_gets_plain_pad_and_resize():
    img = small_head()
    legacy = InputContract.from_dict({"size": 64, "channels": 1, "padding": "centre-black", "resample": "bilinear"})
    assert legacy.crop == "none" and legacy.intensity == "none"
    square = Image.new("L", (400, 400), 0)
    square.paste(img, (0, 50))
    expected = np.asarray(square.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    np.testing.assert_array_equal(to_model_input(img, legacy)[..., 0], expected)


def test_a_bright_one_line_ruler_never_wins_over_a_faint_head():
    img = Image.new("L", (400, 100), 0)
    draw = ImageDraw.Draw(img)
    draw.rectangle((100, 30, 117, 49), fill=200)  # 18 px wide, 20 rows: 0.045 of each row, 0.9 in all
    draw.line((0, 80, 399, 80), fill=200)  # one full row: 1.0
    left, top, right, bottom = head_box(np.asarray(img))
    assert 95 <= left <= 100 and 25 <= top <= 30 and 118 <= right <= 123 and 50 <= bottom <= 55


def test_contract_steps_round_trip_through_a_card_and_unknown_steps_are_refused(tmp_path):
    c = InputContract(size=64, channels=1, crop="head", intensity="head-p99")
    assert InputContract.from_dict(c.to_dict()) == c
    card = json.loads((Path(__file__).resolve().parent.parent / "models" / "seed.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps(dict(card, input_contract=c.to_dict())))
    assert read_card(tmp_path / "m.keras").contract == c
    (tmp_path / "m.json").write_text(json.dumps(dict(card, input_contract=dict(c.to_dict(), crop="brain-mask"))))
    with pytest.raises(ModelError, match="crop"):
        read_card(tmp_path / "m.keras")
    (tmp_path / "m.json").write_text(json.dumps(dict(card, input_contract=dict(c.to_dict(), intensity="zscore"))))
    with pytest.raises(ModelError, match="intensity"):
        read_card(tmp_path / "m.keras")


def test_train_config_refuses_unknown_steps_and_passes_known_ones_to_the_contract():
    config = TrainConfig(architecture="compact_cnn", image_size=48, crop="head", intensity="head-p99")
    config.validate()
    assert config.contract() == InputContract(size=48, channels=1, crop="head", intensity="head-p99")
    with pytest.raises(ConfigError, match="crop"):
        TrainConfig(crop="skull-strip").validate()
    with pytest.raises(ConfigError, match="intensity"):
        TrainConfig(intensity="zscore").validate()


def test_a_dark_midline_does_not_split_the_head():
    img = Image.new("L", (300, 300), 0)
    draw = ImageDraw.Draw(img)
    draw.rectangle((50, 60, 145, 240), fill=180)  # two 'hemispheres' with a 5 px dark gap between them
    draw.rectangle((151, 60, 250, 240), fill=180)
    left, top, right, bottom = head_box(np.asarray(img))
    assert left < 50 and right > 250 and top < 60 and bottom > 240


def test_the_contract_says_its_steps_in_words():
    assert PLAIN.describe() == "64×64 grayscale, padded to square"
    both = InputContract(size=64, channels=1, crop="head", intensity="head-p99").describe()
    assert "cropped to the head" in both and "99th percentile" in both
