"""The guard flags a CT slice by its bright skull ring: the Kaggle "no tumour" class holds CT slices, so the feature
distance cannot (a CT with a haemorrhage read "No tumour, 97.0 %, not referred")."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from brainclf.inference.ood import CT_RING_THRESHOLD, ct_ring_score, image_problem


def _head(skull: int, size: int = 256) -> Image.Image:
    """A grey head on black with a 10-px outer band of grey level `skull` (CT: near white; MR: dark bone)."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    draw.ellipse((20, 30, size - 20, size - 30), fill=skull)
    draw.ellipse((32, 42, size - 32, size - 42), fill=110)
    return img


def test_a_bright_skull_ring_is_called_ct_and_a_dark_one_is_not():
    ct, mr = _head(skull=250), _head(skull=40)
    assert ct_ring_score(ct) >= CT_RING_THRESHOLD > ct_ring_score(mr)
    assert image_problem(ct, None).startswith("the image looks like a CT slice, not MRI")
    assert image_problem(mr, None) == ""
    assert ct_ring_score(Image.new("L", (64, 64), 0)) == 0.0  # no head at all: nothing to call CT


def test_the_predictor_flags_a_ct_slice_before_its_features_are_looked_at(smoke_predictor):
    pred = smoke_predictor.predict(_head(skull=250))
    assert pred.out_of_distribution and "CT slice" in pred.ood_reason
    assert not smoke_predictor.predict(_head(skull=40)).ood_reason.startswith("the image looks like a CT")


def test_the_label_audit_and_the_guard_share_one_score():
    from brainclf.evaluation import CT_RING_THRESHOLD as audit_threshold
    from brainclf.evaluation import ct_ring_score as audit_score

    assert audit_score is ct_ring_score and audit_threshold == CT_RING_THRESHOLD
    assert np.isfinite(ct_ring_score(_head(skull=250).convert("RGB")))
