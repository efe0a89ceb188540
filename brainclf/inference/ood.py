"""Out-of-distribution guard: warn instead of naming a tumour class for inputs unlike a brain MRI slice.

Three checks, any one flags the input:
1. Colour. MR slices are grayscale (stored as L, or RGB with R = G = B). A colourful image (colourfulness
   of Hasler & Süsstrunk above COLOUR_THRESHOLD) is not one: the grayscale model could not see that.
2. CT. On CT the skull is the brightest tissue, a saturated ring around the head; on MRI bone is dark
   (ct_ring_score, the share of near-white pixels in the head's outer band, at least CT_RING_THRESHOLD). The
   feature distance cannot see it: the Kaggle set's "no tumour" class holds CT slices (24 of its 1,025 Testing
   images and 42 of Training score above the threshold; the label audit, README), so a CT with a haemorrhage read
   "no tumour" at 97 %. None of the 1,281 external-radiopaedia MR slices (T1, T1C+, T2) scores above it.
3. Feature-space distance. Each image is described by the per-channel mean and standard deviation of
   the model's early and middle feature maps (texture statistics; the layers are the architecture's
   `ood_layers`). The training images' descriptors are summarised by their mean and a shrunk covariance
   (Ledoit-Wolf). The score of an input is its Mahalanobis distance to that mean; above the threshold the
   input does not look like what the model was trained on.
   The threshold is the 99.8th percentile of ~5,700 in-distribution scores that the Gaussian did not see:
   out-of-fold scores of the training images (5-fold: fit on four fifths, score the fifth) plus the
   validation images. A percentile of the 571 validation scores alone was too noisy at the tail (it
   flagged 1.5 % of Testing where 0.5 % was meant).
   Layers and percentile were chosen on the generated non-MRI set and those held-out scores (see README,
   "Out-of-distribution guard").
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..input.preprocess import pad_to_square, to_8bit, to_model_input

COLOUR_THRESHOLD = 15.0  # Hasler-Süsstrunk colourfulness; grayscale = 0, natural photos ~ 30-100
CT_RING_THRESHOLD = 0.45  # share of saturated pixels in the head's outer band (set by the label audit, README)
RING_WIDTH = 0.06  # of the image side
SATURATED = 0.85
QUANTILE = 0.998
FOLDS = 5


def colourfulness(img: Image.Image) -> float:
    """Hasler & Süsstrunk (2003) colourfulness of an image (0 for any grayscale image)."""
    if img.mode in ("L", "I", "I;16", "F", "1", "LA"):
        return 0.0
    # to_8bit composites transparency over black first, as the model sees it: a grey slice on a transparent
    # background that stores red there is not a colour image.
    rgb = np.asarray(img if img.mode == "RGB" else to_8bit(img).convert("RGB"))  # uint8, H x W x 3
    # rg = R - G and 2 yb = R + G - 2B are integers: their sums and sums of squares, taken over blocks of
    # rows in exact integer arithmetic, give the means and standard deviations without float64 copies of
    # the image (those cost ~2.4 GB for a 50 MP colour photo).
    n = rgb.shape[0] * rgb.shape[1]
    s_rg = s_rg2 = s_yb = s_yb2 = 0
    for top in range(0, rgb.shape[0], 64):
        block = rgb[top:top + 64].astype(np.int64)
        rg = block[..., 0] - block[..., 1]
        yb2 = block[..., 0] + block[..., 1] - 2 * block[..., 2]
        s_rg, s_rg2 = s_rg + int(rg.sum()), s_rg2 + int((rg * rg).sum())
        s_yb, s_yb2 = s_yb + int(yb2.sum()), s_yb2 + int((yb2 * yb2).sum())
    std_rg, std_yb = ((n * s_rg2 - s_rg**2) / n**2) ** 0.5, ((n * s_yb2 - s_yb**2) / (4 * n**2)) ** 0.5
    return float(np.hypot(std_rg, std_yb) + 0.3 * np.hypot(s_rg / n, s_yb / (2 * n)))


def _gaussian(features: np.ndarray) -> dict:
    from sklearn.covariance import LedoitWolf

    means = features.mean(0, keepdims=True)
    return {"means": means, "precision": LedoitWolf().fit(features - means).precision_}


def held_out_scores(features: np.ndarray, val_features: np.ndarray, folds: int = FOLDS, seed: int = 0,
                    full_fit: dict | None = None) -> np.ndarray:
    """Scores of in-distribution images the Gaussian was not fitted on: each training image scored by a
    Gaussian fitted on the other folds, then the validation images scored by the full fit (given, or made)."""
    from sklearn.model_selection import KFold

    scores = [mahalanobis_scores(val_features, full_fit or _gaussian(features))]
    if len(features) >= 2 * folds:
        oof = np.zeros(len(features))
        for fit_idx, held_idx in KFold(folds, shuffle=True, random_state=seed).split(features):
            oof[held_idx] = mahalanobis_scores(features[held_idx], _gaussian(features[fit_idx]))
        scores.insert(0, oof)
    return np.concatenate(scores)


def fit_feature_model(features: np.ndarray, val_features: np.ndarray, layers: list[str] | tuple[str, ...] = (),
                      seed: int = 0) -> dict:
    """Mean + shrunk precision of the training descriptors; threshold from held-out in-distribution scores."""
    features, val_features = np.asarray(features, np.float64), np.asarray(val_features, np.float64)
    g = _gaussian(features)
    held = held_out_scores(features, val_features, seed=seed, full_fit=g)
    return {"means": g["means"].round(6).tolist(), "precision": g["precision"].round(8).tolist(),
            "threshold": float(np.quantile(held, QUANTILE)), "quantile": QUANTILE,
            "threshold_from": f"{len(held)} held-out scores ({len(held) - len(val_features)} out-of-fold training, "
                              f"{len(val_features)} validation)",
            "colour_threshold": COLOUR_THRESHOLD, "layers": list(layers), "features": "per-channel mean and std"}


def mahalanobis_scores(features: np.ndarray, stats: dict) -> np.ndarray:
    means = np.asarray(stats["means"], dtype=np.float64)
    precision = np.asarray(stats["precision"], dtype=np.float64)
    d = features[:, None, :].astype(np.float64) - means[None]  # (n, classes, dims)
    m2 = np.einsum("ncd,de,nce->nc", d, precision, d)
    return np.sqrt(np.maximum(m2.min(1), 0))


def colour_problem(img: Image.Image, stats: dict | None) -> str:
    """Why a decoded image is flagged for its colour (MR slices are grayscale), or ''."""
    c = colourfulness(img)
    if c > (stats or {}).get("colour_threshold", COLOUR_THRESHOLD):
        return f"the image is in colour (colourfulness {c:.0f}); MR slices are grayscale"
    return ""


def ct_ring_score(img: Image.Image, size: int = 224) -> float:
    """Share of near-white pixels in the outer band of the head (0 when no head is found): on CT slices of the
    Kaggle set 0.6-0.8, on MR slices mostly below 0.3 (the highest of external-radiopaedia's 1,281: 0.44; three
    Kaggle MR slices reach 0.45-0.51 and are flagged). brainclf.evaluation.label_audit set the threshold. A slice
    on a white background scores high too: it is not a scanner's MR slice either."""
    from scipy import ndimage

    gray = pad_to_square(to_8bit(img).convert("L")).resize((size, size), Image.Resampling.BILINEAR)
    g = np.asarray(gray, dtype=np.float32) / 255.0
    head = ndimage.binary_fill_holes(g > 0.08)
    inner = ndimage.binary_erosion(head, iterations=max(2, int(RING_WIDTH * size)))
    ring = head & ~inner
    return float((g[ring] > SATURATED).mean()) if ring.any() else 0.0


def image_problem(img: Image.Image, stats: dict | None) -> str:
    """Why a decoded image is flagged before the model's features are looked at (colour, a CT's skull), or ''."""
    if reason := colour_problem(img, stats):
        return reason
    if (score := ct_ring_score(img)) >= CT_RING_THRESHOLD:
        return (f"the image looks like a CT slice, not MRI (a bright skull ring: {score:.2f} of the head's outer band "
                f"is near white, CT from {CT_RING_THRESHOLD:.2f})")
    return ""


def check(img: Image.Image | None, features: np.ndarray, stats: dict | None) -> tuple[bool, str, float]:
    """(flagged, reason, score) for one input: its decoded image (for colour and CT) and its features."""
    if img is not None and (reason := image_problem(img, stats)):
        return True, reason, float("nan")
    if not stats:
        return False, "", float("nan")
    score = float(mahalanobis_scores(np.asarray(features)[None], stats)[0])
    if not np.isfinite(score):
        return True, "the model's features for this image are not numbers (is the model file broken?)", score
    if score > stats["threshold"]:
        return True, (f"the image is unlike the training MRI slices (feature distance {score:.1f} > "
                      f"{stats['threshold']:.1f})"), score
    return False, "", score


def non_mri_images(seed: int = 0) -> list[tuple[str, Image.Image]]:
    """Inputs that are not brain MRI slices, generated here or shipped with installed packages: colour
    photographs (scikit-learn's sample images, crops and grayscale versions), document and text renders,
    blank, noise, gradient, checkerboard and geometric images."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    out: list[tuple[str, Image.Image]] = []
    for name, arr in zip(("china", "flower"), load_sample_images().images):
        photo = Image.fromarray(arr)
        w, h = photo.size
        for k in range(6):  # random crops
            s = int(rng.integers(min(w, h) // 3, min(w, h)))
            x0, y0 = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
            crop = photo.crop((x0, y0, x0 + s, y0 + s))
            out.append((f"photo_{name}_crop{k}", crop))
            out.append((f"photo_{name}_crop{k}_gray", crop.convert("L")))
        out.append((f"photo_{name}", photo))
        out.append((f"photo_{name}_gray", photo.convert("L")))
    words = "Patient report. Findings: no acute abnormality. Impression: normal study. Signed, Dr. Smith"
    for k in range(8):  # documents and text renders, dark-on-light and light-on-dark
        bg, fg = ((255, 0) if k % 2 == 0 else (0, 255))
        img = Image.new("L", (224, 224), bg)
        d = ImageDraw.Draw(img)
        for line in range(3 + k):
            d.text((8, 8 + 18 * line), words[(line * 7) % 40:(line * 7) % 40 + 34], fill=fg)
        out.append((f"text_{k}", img))
    for v in (0, 128, 255):
        out.append((f"blank_{v}", Image.new("L", (224, 224), v)))
    for k in range(6):
        out.append((f"noise_uniform_{k}", Image.fromarray(rng.integers(0, 256, (224, 224), dtype=np.uint8))))
        g = np.clip(rng.normal(128, 40, (224, 224)), 0, 255).astype(np.uint8)
        out.append((f"noise_gauss_{k}", Image.fromarray(g).filter(ImageFilter.GaussianBlur(k))))
        out.append((f"noise_colour_{k}", Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))))
    ramp = np.tile(np.linspace(0, 255, 224), (224, 1)).astype(np.uint8)
    out += [("gradient_h", Image.fromarray(ramp)), ("gradient_v", Image.fromarray(ramp.T.copy()))]
    for cells in (2, 8, 28):
        yy, xx = np.mgrid[0:224, 0:224] // (224 // cells)
        out.append((f"checker_{cells}", Image.fromarray(((yy + xx) % 2 * 255).astype(np.uint8))))
    for k in range(6):  # geometric shapes on black
        img = Image.new("L", (224, 224), 0)
        d = ImageDraw.Draw(img)
        for _ in range(3 + k):
            x0, y0 = rng.integers(0, 180, 2)
            shape = d.rectangle if rng.random() < 0.5 else d.ellipse
            shape([int(x0), int(y0), int(x0 + rng.integers(10, 60)), int(y0 + rng.integers(10, 60))],
                  fill=int(rng.integers(80, 256)))
        out.append((f"shapes_{k}", img))
    return out


def fit_guard(predictor, x_train: np.ndarray, x_val: np.ndarray, x_test: np.ndarray | None = None,
              seed: int = 0) -> dict:
    """A card's `ood`: the feature-distance guard fitted on training images (threshold from validation), measured
    on the test images (when given) and on synthetic non-MRI images. `predictor` gives the features
    (brainclf.inference.predict.Predictor: raw_probs_and_features, ood_layers, contract)."""

    _, f_tr = predictor.raw_probs_and_features(x_train, tta=False)
    _, f_va = predictor.raw_probs_and_features(x_val, tta=False)
    guard = fit_feature_model(f_tr, f_va, layers=predictor.ood_layers, seed=seed)
    guard["fitted_on"] = f"{len(x_train)} training images (features); threshold: {guard['threshold_from']}"
    measured = {}
    if x_test is not None:
        _, f_te = predictor.raw_probs_and_features(x_test, tta=False)
        flags = [check(None, f, guard)[0] for f in f_te]
        measured["test_flagged"] = int(sum(flags))
        measured["test_n"] = len(flags)
    flagged = []
    for name, img in non_mri_images(seed):
        _, f = predictor.raw_probs_and_features(to_model_input(img, predictor.contract), tta=False)
        flagged.append((name, check(img, f[0], guard)[0]))
    measured["non_mri_n"] = len(flagged)
    measured["non_mri_flagged"] = int(sum(f for _, f in flagged))
    measured["non_mri_missed"] = [n for n, f in flagged if not f]
    guard["measured"] = measured
    return guard
