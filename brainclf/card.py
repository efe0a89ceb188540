"""Model cards and safe model loading.

models/<name>.keras is the network (native Keras format, loaded with safe_mode=True);
models/<name>.json is its card: what it is, what it expects, how it was trained, on which data, and how
well it did, including the per-image test predictions so the app can draw the confusion matrix and ROC
without re-running the model. A model without a matching card is refused.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import CLASS_NAMES, DISPLAY_NAMES, __version__, limits
from .errors import ModelError
from .preprocess import InputContract


@dataclass
class ModelCard:
    name: str
    architecture: str
    input_contract: dict
    version: str = ""
    description: str = ""
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    display_names: dict[str, str] = field(default_factory=lambda: dict(DISPLAY_NAMES))
    gradcam_layer: str | list[str] = "last_conv"  # a list for ensembles: one feature map per member
    params: int = 0
    file_sha256: str = ""
    created: str = ""
    libraries: dict = field(default_factory=dict)
    machine: str = ""
    training: dict = field(default_factory=dict)  # config, fingerprint, history, timing, splits sizes
    metrics: dict = field(default_factory=dict)  # {"test": {...}, "val": {...}}
    # temperature (fitted on validation), temperature_tta, refer_threshold, ECE before/after
    calibration: dict = field(default_factory=dict)
    ood: dict = field(default_factory=dict)  # out-of-distribution guard (brainclf.ood): statistics, threshold
    faithfulness: dict = field(default_factory=dict)  # Grad-CAM deletion test and randomisation check
    test_predictions: list[dict] = field(default_factory=list)  # path, true, pred, probs
    test_predictions_tta: list[dict] = field(default_factory=list)  # the same with flip TTA
    # Per external dataset name: per-image rows (path, true, pred, probs, sequence, referred, ood, group).
    external_predictions: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def contract(self) -> InputContract:
        return InputContract.from_dict(self.input_contract)

    @property
    def tta_default(self) -> bool:
        """Whether the model is meant to run with flip TTA (chosen on validation when it was trained)."""
        return bool(self.calibration.get("tta_default", False))

    def _stored_with_tta(self, tta: bool | None) -> bool:
        """Whether the stored TTA results answer for `tta` (None: the card's default); older cards hold
        test predictions without TTA only."""
        tta = self.tta_default if tta is None else tta
        return bool(tta and self.metrics.get("test_tta") and self.test_predictions_tta)

    def test_metrics(self, tta: bool | None = None) -> dict:
        """Test metrics as the model runs (by default: with TTA if the card says so and has them)."""
        return self.metrics["test_tta"] if self._stored_with_tta(tta) else self.metrics.get("test") or {}

    def stored_test_predictions(self, tta: bool) -> tuple[list[dict], bool]:
        """(per-image test predictions, whether they are with TTA): with TTA when asked and stored."""
        with_tta = self._stored_with_tta(tta)
        return (self.test_predictions_tta if with_tta else self.test_predictions), with_tta

    @property
    def label(self) -> str:
        """How results name the model: 'default 20261126-1a2b3c4d'."""
        return f"{self.name} {self.version}".strip()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)


def card_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict:
    import keras
    import numpy
    import sklearn
    import tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "scikit-learn": sklearn.__version__, "brainclf": __version__}


def machine_description() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()}"


def read_card(model_path: str | Path) -> ModelCard:
    cp = card_path(model_path)
    if not cp.exists():
        raise ModelError(f"{Path(model_path).name} has no model card ({cp.name} is missing); "
                         "a model without its card cannot be trusted and is refused.")
    try:
        return ModelCard.from_dict(json.loads(cp.read_text()))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
        raise ModelError(f"The model card {cp.name} is not valid JSON: {e}") from None


def check_model_archive(path: str | Path) -> None:
    """Refuse a .keras file that is not a zip, or whose zip directory declares members too large to inflate
    (brainclf.limits), before Keras opens it. Reads only the directory; Python's zipfile never inflates a
    member past the size the directory declares, so a forged directory cannot get more past this check."""
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise ModelError(f"{path.name} could not be loaded as a Keras model: a .keras file is a zip archive and "
                         f"this one is not a readable zip ({type(e).__name__}: {str(e)[:120]}).") from None
    if len(members) > limits.MAX_KERAS_MEMBERS:
        raise ModelError(f"{path.name} holds {len(members):,} files; a .keras model holds a handful "
                         f"(limit {limits.MAX_KERAS_MEMBERS:,}). Refused before loading.")
    for m in members:
        limit = limits.MAX_KERAS_JSON_BYTES if m.filename.endswith(".json") else limits.MAX_KERAS_MEMBER_BYTES
        if m.file_size > limit:
            raise ModelError(f"{path.name}: {m.filename[:80]} inflates to {limits.size_text(m.file_size)} "
                             f"(compressed {limits.size_text(m.compress_size)}), above the limit of "
                             f"{limits.size_text(limit)} for it; refused before loading (a zip bomb, or not a model "
                             "of this project).")
    total = sum(m.file_size for m in members)
    if total > limits.MAX_KERAS_TOTAL_BYTES:
        raise ModelError(f"{path.name} inflates to {limits.size_text(total)} in all, above the limit of "
                         f"{limits.size_text(limits.MAX_KERAS_TOTAL_BYTES)}; refused before loading.")


def load_model(model_path: str | Path, check_hash: bool = True):
    """Load a .keras model with its card, refusing anything missing, corrupt or mismatched.

    Returns (keras_model, card).
    """
    import keras

    path = Path(model_path)
    if path.suffix != ".keras":
        raise ModelError(f"{path.name}: expected a native Keras model file ending in .keras.")
    if not path.exists():
        raise ModelError(f"Model file {path} does not exist.")
    card = read_card(path)
    check_model_archive(path)
    if check_hash and card.file_sha256 and card.file_sha256 != file_sha256(path):
        raise ModelError(f"{path.name} does not match its card {card_path(path).name} (file hash differs): "
                         "the model or the card was replaced.")
    if list(card.class_names) != list(CLASS_NAMES):
        raise ModelError(f"{card_path(path).name} lists classes {card.class_names}; this version of brainclf "
                         f"expects {list(CLASS_NAMES)}.")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a broken zip/config
        raise ModelError(f"{path.name} could not be loaded as a Keras model (corrupt or unsafe file): "
                         f"{type(e).__name__}: {str(e)[:200]}") from None
    expected = (None, *card.contract.shape)
    if tuple(model.input_shape) != expected:
        raise ModelError(f"{path.name} takes input {tuple(model.input_shape)[1:]} but its card says "
                         f"{expected[1:]}: the card does not belong to this model.")
    if model.output_shape[-1] != len(CLASS_NAMES):
        raise ModelError(f"{path.name} has {model.output_shape[-1]} outputs, expected {len(CLASS_NAMES)} classes.")
    return model, card


def list_models(models_dir: str | Path = "models") -> list[Path]:
    """Models in a folder that have a card beside them."""
    d = Path(models_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.keras") if card_path(p).exists())


def add_model(name: str, model_bytes: bytes, card_bytes: bytes, models_dir: str | Path = "models") -> Path:
    """Check an uploaded model + card in a scratch folder (load_model's checks), then add it to models_dir.

    A bad upload never lands in models_dir; an existing model of the same name is never overwritten.
    """
    import shutil
    import tempfile

    limits.validate_model_name(name, ModelError)
    models_dir = Path(models_dir)
    target = models_dir / f"{name}.keras"
    if target.exists():
        raise ModelError(f"A model named {name} already exists; rename the files first.")
    with tempfile.TemporaryDirectory() as tmp:
        mp = Path(tmp) / f"{name}.keras"
        mp.write_bytes(model_bytes)
        card_path(mp).write_bytes(card_bytes)
        load_model(mp)
        models_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(card_path(mp), card_path(target))
        shutil.copyfile(mp, target)
    return target
