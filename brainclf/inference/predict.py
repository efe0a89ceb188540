"""Inference: a Predictor wraps one loaded model + card, compiles its forward pass once, and stamps the
model's name and version on every result (so each prediction knows which card produced it)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .. import CLASS_NAMES, DISPLAY_NAMES
from ..errors import ModelError
from ..input.limits import check_refer_confidence, check_refer_target
from ..input.preprocess import InputContract, decode_image, to_model_input
from ..model import backend
from ..model.card import ModelCard, load_model, short_hash
from ..model.card_schema.sections import Calibration
from ..scoring.operating_point import thresholds_for_target, with_fallback_bar
from ..scoring.trust import apply_temperature
from .explain import GradCam, penultimate_features
from .ood import check

NOT_A_NUMBER = "the model's output for this image is not a number (is the model file broken?): no answer"


@dataclass
class Prediction:
    name: str  # file name (or upload name)
    probabilities: dict[str, float]  # class name → probability, in class order
    model_name: str
    model_version: str
    model_input: np.ndarray | None = field(default=None, repr=False)  # what the model saw (H, W, C)
    refer_threshold: float = 0.0  # below this confidence: "refer to a radiologist" (the predicted class's)
    out_of_distribution: bool = False  # the OOD guard says this is not like a brain MRI slice
    ood_reason: str = ""
    ood_score: float = float("nan")
    heatmap: np.ndarray | None = field(default=None, repr=False)  # Grad-CAM of the predicted class, if asked
    model_sha256: str = ""  # the model file's SHA-256: name and version are whatever a card says

    @property
    def model_hash(self) -> str:
        """The model file's short hash, as CSV rows, reports and pages show it."""
        return short_hash(self.model_sha256)

    @property
    def referred(self) -> bool:
        # Fails closed: max() skips a NaN that is not first, so any output that is not a number refers the slice.
        return not (self.confidence >= self.refer_threshold and np.isfinite(list(self.probabilities.values())).all())

    @property
    def unanswered(self) -> bool:
        """Referred or flagged: a flagged slice is no answer either, whatever its confidence (fails closed)."""
        return self.referred or self.out_of_distribution

    @property
    def predicted(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    @property
    def predicted_index(self) -> int:
        return CLASS_NAMES.index(self.predicted)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.predicted]

    @property
    def predicted_display(self) -> str:
        return DISPLAY_NAMES[self.predicted]

    def as_row(self) -> dict:
        return {"file": self.name, "prediction": self.predicted, "confidence": round(self.confidence, 6),
                **{f"p_{c}": round(p, 6) for c, p in self.probabilities.items()},
                "refer": self.unanswered, "out_of_distribution": self.out_of_distribution,
                "model": self.model_name, "model_version": self.model_version, "model_sha256": self.model_hash}


class Predictor:
    """Loaded once, shared by every session: the compiled functions are safe to call from many threads."""

    # Accepted accuracy the refer rule aims at (an admin setting, with_refer_target); None: the card's thresholds.
    refer_target: float | None = None
    _refer_confidence: float | None = None  # the server's (with_refer_target); else refer_confidence is the card's
    _target_thresholds: dict = {}  # {tta: {class: threshold}} for refer_target, read off the curves once

    def __init__(self, model, card: ModelCard, tta: bool | None = None):
        import keras

        # Average with the left-right flipped slice; None: as the card says (chosen on validation).
        self.tta = card.tta_default if tta is None else bool(tta)
        self.model = model
        self.card = card
        self.contract: InputContract = card.contract
        # Probabilities and the OOD guard's features (per-channel mean and standard deviation of early and
        # middle feature maps) in one pass, compiled once with a fixed signature: no retracing per call,
        # ~10x faster than model.predict on single images.
        descriptors = []
        for name in self.ood_layers:
            try:
                fmap = model.get_layer(name).output
            except ValueError:  # a card naming no OOD layers, for a model unlike its stated architecture
                raise ModelError(f"{card.name}: the OOD guard needs layer {name!r}, which the model does not have: "
                                 "the card does not belong to this model.") from None
            mean = keras.ops.mean(fmap, axis=(1, 2))
            std = keras.ops.sqrt(keras.ops.maximum(keras.ops.mean(fmap * fmap, axis=(1, 2)) - mean * mean, 0.0))
            descriptors += [mean, std]
        self._descriptors = keras.ops.concatenate(descriptors, axis=-1)
        net = keras.Model(model.inputs, [model.output, self._descriptors])
        self._forward_both = backend.forward_function(net, self.contract.shape)
        self._grad_lock = threading.Lock()
        self._lazy: dict = {}  # built on first use; shared with the with_tta() copies (same model)

    @classmethod
    def load(cls, model_path: str | Path, tta: bool | None = None) -> Predictor:
        model, card = load_model(model_path)
        return cls(model, card, tta=tta)

    def wait_ready(self) -> Predictor:
        """Loaded already (a ProcessPredictor waits for its model process here)."""
        return self

    def with_tta(self, tta: bool) -> Predictor:
        """The same loaded model with test-time augmentation on or off (shares the compiled function)."""
        if tta == self.tta:
            return self
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.tta = tta
        return other

    def with_refer_target(self, target: float | None, confidence: float | None = None) -> Predictor:
        """The same loaded model whose refer rule aims at `target` accepted accuracy (None: the card's) on every
        source's validation part, or with `confidence` at a lower bound of it that high (read off the card's
        risk–coverage curves); unchanged for a card without them, and for a site model: its site step chose its
        target, which its scope line ("answered at a 98 % target") and its go-live report state."""
        cal = self.card.calibration
        if (target is None and confidence is None) or not cal.get("operating") or self.card.measured_site or \
                (target, confidence) == (self.refer_target, self._refer_confidence):
            return self
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        # An uploaded card may lack the field; the schema's default stands in, as it does when the card is checked.
        card_target = cal.get("refer_target_accuracy", Calibration.model_fields["refer_target_accuracy"].default)
        other.refer_target = check_refer_target(target if target is not None else card_target)
        confidence = confidence if confidence is not None else cal.get("refer_confidence")
        other._refer_confidence = None if confidence is None else check_refer_confidence(confidence)
        # Once here, not on every prediction (refer_thresholds is on the hot path).
        other._target_thresholds = {tta: thresholds_for_target(cal[key], other.refer_target, other._refer_confidence)
                                    for tta, key in ((False, "operating"), (True, "operating_tta")) if cal.get(key)}
        return other

    @property
    def refer_confidence(self) -> float | None:
        """The confidence of the lower bound that must reach the refer target: the server's, else the card's;
        None: the share seen on validation must reach it."""
        return self._refer_confidence or (self.card.calibration or {}).get("refer_confidence")

    @property
    def refer_target_accuracy(self) -> float | None:
        """The accepted accuracy the refer rule aims at: the server's target, else the card's."""
        return self.refer_target or self.card.calibration.get("refer_target_accuracy")

    @property
    def ood_layers(self) -> tuple[str, ...]:
        """The card's OOD layers (older cards name one "layer"), else the architecture's."""
        from ..model.architectures import get_architecture

        ood = self.card.ood
        return tuple(ood.get("layers") or ([ood["layer"]] if ood.get("layer") else
                                           get_architecture(self.card.architecture).ood_layers))

    @property
    def temperature(self) -> float:
        return float(self.card.calibration.get("temperature_tta" if self.tta else "temperature", 1.0) or 1.0)

    @property
    def refer_threshold(self) -> float:
        """The symmetric part of the refer rule (every class); see refer_thresholds."""
        if self.tta in self._target_thresholds:
            return self._target_thresholds[self.tta]["glioma"]
        cal = self.card.calibration
        return float(cal.get("refer_threshold_tta" if self.tta else "refer_threshold", 0.0) or 0.0)

    @property
    def refer_thresholds(self) -> dict[str, float]:
        """The refer rule per predicted class (a stricter one for "no tumour" where the card has it)."""
        if self.tta in self._target_thresholds:  # the server's target, read off the card's curves
            return dict(self._target_thresholds[self.tta])
        per_class = self.card.calibration.get("refer_thresholds_tta" if self.tta else "refer_thresholds") or {}
        return {c: float(per_class.get(c, self.refer_threshold)) for c in CLASS_NAMES}

    @property
    def applied_refer_thresholds(self) -> dict[str, float]:
        """The bars every reader applies (page, CLI, batch CSV, evaluations): refer_thresholds, or the fallback bar
        for every class where the card has no fitted rule (an upload may have none)."""
        return with_fallback_bar(self.refer_thresholds)

    def raw_probs_and_features(self, x: np.ndarray, batch_size: int = 64, tta: bool | None = None):
        """(N, H, W, C) float32 model inputs → (N, 4) uncalibrated softmax outputs, (N, F) features."""
        tta = self.tta if tta is None else tta
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        probs, feats = [], []
        for i in range(0, len(x), batch_size):
            p, f = self._forward_both(x[i:i + batch_size])
            p = backend.to_numpy(p)
            if tta:
                p = self._average_with_mirrored(p, x[i:i + batch_size])
            probs.append(p)
            feats.append(backend.to_numpy(f))
        if not probs:
            return np.zeros((0, len(CLASS_NAMES)), np.float32), np.zeros((0, 0), np.float32)
        return np.concatenate(probs), np.concatenate(feats)

    def _average_with_mirrored(self, probs: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Flip TTA: the mean of `probs` (of x) and the probabilities of the left-right mirrored x."""
        return (probs + backend.to_numpy(self._forward_both(np.ascontiguousarray(x[:, :, ::-1]))[0])) / 2

    def raw_probs(self, x: np.ndarray, batch_size: int = 64, tta: bool | None = None) -> np.ndarray:
        return self.raw_probs_and_features(x, batch_size, tta)[0]

    def predict_arrays(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, H, W, C) float32 model inputs → (N, 4) calibrated probabilities (the card's temperature)."""
        return apply_temperature(self.raw_probs(x, batch_size), self.temperature)

    def preprocess(self, source, name: str | None = None) -> np.ndarray:
        """Bytes, path or PIL image → model input, through the one preprocessing function."""
        img = source if isinstance(source, Image.Image) else decode_image(source, name=name)
        return to_model_input(img, self.contract)

    def predict(self, source, name: str = "image", explain: bool = False) -> Prediction:
        """One image (bytes, path, or PIL image) → Prediction. Raises ImageError on bad input.

        `explain=True` also fills `heatmap` with the predicted class's Grad-CAM, from the same pass."""
        img = source if isinstance(source, Image.Image) else decode_image(source, name=name)
        x = to_model_input(img, self.contract)
        heat = None
        if explain:
            heat, raw, feats = self._explained(x[None])
        else:
            raw, feats = self.raw_probs_and_features(x)
        pred = self.prediction_from_probs(name, apply_temperature(raw, self.temperature)[0], x)
        if not pred.out_of_distribution:  # a not-a-number output is flagged already
            pred.out_of_distribution, pred.ood_reason, pred.ood_score = check(img, feats[0], self.card.ood or None)
        if heat is not None:
            pred.heatmap = heat[0]
        return pred

    def explain_arrays(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, C) model inputs → calibrated probabilities (N, 4) and the predicted classes' Grad-CAM
        heatmaps (N, H, W), in one pass (plus the flipped pass with TTA)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        heat, raw, _ = self._explained(x)
        return apply_temperature(raw, self.temperature), heat

    def _explained(self, x: np.ndarray):
        """Heatmaps of the predicted classes, raw probabilities (TTA-averaged if on) and OOD features."""
        cam = self._gradcam_function()
        heat, raw, extras = cam.batch_with_extras(x)
        if self.tta:
            unflipped = raw.argmax(1)
            raw = self._average_with_mirrored(raw, x)
            # The averaged prediction can differ from the unflipped slice's: explain the class reported.
            changed = np.flatnonzero(raw.argmax(1) != unflipped)
            if len(changed):
                heat[changed] = cam.batch(x[changed], raw[changed].argmax(1))[0]
        return heat, raw, extras[0]

    def prediction_from_probs(self, name: str, probs: np.ndarray, x: np.ndarray | None = None) -> Prediction:
        """A Prediction of calibrated `probs`; outputs that are not all finite numbers (a broken model) are
        flagged and referred, never answered."""
        pred = Prediction(name=name, probabilities={c: float(p) for c, p in zip(CLASS_NAMES, probs)},
                          model_name=self.card.name, model_version=self.card.version, model_input=x,
                          model_sha256=self.card.file_sha256,
                          refer_threshold=self.applied_refer_thresholds[CLASS_NAMES[int(np.argmax(probs))]])
        if not np.isfinite(probs).all():
            pred.out_of_distribution, pred.ood_reason = True, NOT_A_NUMBER
        return pred

    def gradcam(self, x: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """Grad-CAM heatmap in [0, 1] at the input's resolution, for `class_index` (default: predicted)."""
        return self._gradcam_function()(x, class_index)

    def penultimate_features(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W, C) model inputs → the pooled features before the classifier (for the PCA map)."""
        return penultimate_features(self.model, np.asarray(x, dtype=np.float32))

    def _gradcam_function(self):
        """Grad-CAM with the OOD descriptors as an extra output, built on first use (thread-safe)."""
        if "gradcam" not in self._lazy:
            with self._grad_lock:
                if "gradcam" not in self._lazy:
                    self._lazy["gradcam"] = GradCam(self.model, self.card.gradcam_layer,
                                                    extra_outputs=[self._descriptors])
        return self._lazy["gradcam"]
