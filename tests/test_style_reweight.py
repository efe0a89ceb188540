"""Style reweighting (train --style-reweight FACTOR): primary-source slices whose class image style alone misreads
weigh more, the primary source's mean weight stays 1, extra sources' slices are untouched, and a training run
with it finishes and records the setting."""

import numpy as np
import pytest
from PIL import Image

from brainclf.data.datasets import Sample
from brainclf.training.reweight import describe, style_weights


def _styled_samples(tmp_path, per_class=20, off_style=4):
    """Two classes told apart by brightness, except `off_style` slices of class 0 drawn in class 1's style;
    plus extra-source slices."""
    rng = np.random.default_rng(3)
    samples, odd = [], []
    for label, level in ((0, 200), (1, 40)):
        for i in range(per_class):
            styled_as = 40 if label == 0 and i < off_style else level
            pixels = np.clip(rng.normal(styled_as, 25, (48, 48)), 0, 255).astype(np.uint8)
            path = tmp_path / f"c{label}_{i}.png"
            Image.fromarray(pixels).save(path)
            samples.append(Sample(path, label))
            odd.append(styled_as != level)
    extra = tmp_path / "extra.png"
    Image.fromarray(np.full((48, 48), 120, np.uint8)).save(extra)
    samples += [Sample(extra, 0, source="other"), Sample(extra, 1, source="other")]
    return samples, np.array(odd + [False, False])


def test_slices_misread_by_style_weigh_more_and_the_source_mean_stays_one(tmp_path):
    samples, odd = _styled_samples(tmp_path)
    weights, summary = style_weights(samples, factor=4.0, seed=0)
    primary = np.array([s.source == "" for s in samples])
    assert summary["applied"] and summary["primary_slices"] == primary.sum()
    assert weights[odd].min() > weights[primary & ~odd].max()  # the off-style slices are the heavy ones
    assert weights[primary].mean() == pytest.approx(1.0, abs=1e-5)
    assert (weights[~primary] == 1.0).all()
    assert summary["misread_by_style"] >= odd.sum()
    assert f"of {primary.sum()} primary-source" in describe(summary)


def test_factor_zero_or_too_few_slices_leave_every_weight_at_one(tmp_path):
    samples, _ = _styled_samples(tmp_path)
    assert (style_weights(samples, factor=0.0, seed=0)[0] == 1.0).all()
    (tmp_path / "few").mkdir()
    few, _ = _styled_samples(tmp_path / "few", per_class=3, off_style=0)
    weights, summary = style_weights(few, factor=4.0, seed=0)
    assert (weights == 1.0).all() and not summary["applied"]
    assert "too few" in describe(summary)


def test_training_with_style_reweighting_finishes_and_records_it(tmp_path, synthetic_dataset):
    from brainclf.model import read_card
    from brainclf.training import TrainConfig, TrainRequest, train

    config = TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=8, style_reweight=3.0)
    messages = []
    out = train(TrainRequest(config, data=synthetic_dataset, name="restyled", models_dir=tmp_path / "models",
                             run_dir=tmp_path / "run", progress=lambda p: messages.append(p.message)))
    card = read_card(out)
    assert card.training["config"]["style_reweight"] == 3.0
    assert np.isfinite(card.training["history"]["loss"]).all()
    assert any("Style reweighting" in m for m in messages)


@pytest.mark.parametrize("factor", [-1.0, 101.0])
def test_style_reweighting_out_of_range_is_refused(factor):
    from brainclf.errors import ConfigError
    from brainclf.training import TrainConfig

    with pytest.raises(ConfigError, match="style reweighting"):
        TrainConfig(style_reweight=factor).validate()
