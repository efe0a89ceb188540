"""Label audit: CT slices in an MRI dataset and confident disagreement, listed for a person to judge."""

from __future__ import annotations

import numpy as np
from PIL import Image

from brainclf.data import Sample
from brainclf.evaluation import CT_RING_THRESHOLD, audit_labels, ct_ring_score


def head(size=128, skull=250, scalp=90, brain=110, seed=0) -> Image.Image:
    """An axial 'head': a disc of brain inside a skull ring (bright on CT, dark on MRI) and a scalp band."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - size / 2, yy - size / 2)
    img = np.zeros((size, size))
    img[r < 0.46 * size] = scalp
    img[r < 0.45 * size] = skull
    img[r < 0.38 * size] = brain
    img += rng.normal(0, 6, img.shape) * (r < 0.46 * size)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def test_ct_ring_score_separates_a_bright_skull_from_a_dark_one():
    ct, mri = head(skull=250, scalp=60), head(skull=15, scalp=200)
    assert ct_ring_score(ct) >= CT_RING_THRESHOLD > ct_ring_score(mri)
    assert ct_ring_score(Image.new("L", (64, 64))) == 0.0  # no head at all


def test_audit_lists_ct_and_confident_disagreement_only(tmp_path):
    (tmp_path / "notumor").mkdir()
    (tmp_path / "glioma").mkdir()
    head(skull=250, scalp=60).save(tmp_path / "notumor" / "ct.png")
    head(skull=15, scalp=200, seed=1).save(tmp_path / "notumor" / "mri.png")
    head(skull=15, scalp=200, seed=2).save(tmp_path / "glioma" / "odd.png")
    head(skull=15, scalp=200, seed=3).save(tmp_path / "glioma" / "fine.png")
    samples = [Sample(tmp_path / "notumor" / "ct.png", 2), Sample(tmp_path / "notumor" / "mri.png", 2),
               Sample(tmp_path / "glioma" / "odd.png", 0), Sample(tmp_path / "glioma" / "fine.png", 0)]
    rows = [{"path": "notumor/mri.png", "true": "notumor", "probs": [0.0, 0.0, 0.9, 0.1]},
            {"path": "glioma/odd.png", "true": "glioma", "probs": [0.02, 0.0, 0.97, 0.01]},
            {"path": "glioma/fine.png", "true": "glioma", "probs": [0.8, 0.1, 0.1, 0.0]},
            {"path": "notumor/ct.png", "true": "notumor", "probs": [0.0, 0.0, 0.99, 0.01]}]
    found = {f["path"]: f for f in audit_labels(samples, tmp_path, rows)}
    assert set(found) == {"notumor/ct.png", "glioma/odd.png"}
    assert "CT" in found["notumor/ct.png"]["reasons"][0]
    assert found["glioma/odd.png"]["model_says"] == "notumor"
