"""Model cards and safe model loading.

models/<name>.keras is the network (native Keras format, loaded with safe_mode=True);
models/<name>.json is its card: what it is, what it expects, how it was trained, on which data, and how
well it did, including the per-image test predictions so the app can draw the confusion matrix and ROC
without re-running the model. A model without a matching card is refused.

Every card is checked against brainclf.model.card_schema when it is read, saved or uploaded: a card with a wrong
type, an out-of-range rate, a path outside the data folder or markup in its text is refused with a message
naming the field, so a card that loads cannot crash the pages that show it. Uploaded models (brainclf.model.uploads)
carry a `provenance` (who, when, whether their test metrics were re-measured here by
brainclf.evaluation.provenance.verify_uploaded_model).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy

from .. import CLASS_NAMES, DISPLAY_NAMES, __version__
from ..errors import ConfigError, ModelError
from ..files import write_json_atomically
from ..input import limits
from ..input.preprocess import InputContract
from .card_schema import SCHEMA_VERSION, CardSchemaError, display_text, validate_card
from .card_schema.results import MAX_PREDICTION_ROWS
from .model_archive import check_model_archive
from .model_checks import check_card_layers, check_softmax_output

__all__ = ["ModelCard", "card_from_bytes", "check_model_archive", "display_text", "load_model", "read_card"]

SHORT_HASH = 12  # hex digits of a model file's SHA-256 that results show beside its name and version


def short_hash(sha256: str) -> str:
    """The model file's hash as results show it ('2251ef4c63b4'), or 'no hash' for a card that records none."""
    return sha256[:SHORT_HASH] if sha256 else "no hash"


# A card holds every test prediction (the bundled ones are 1-3 MB); far larger is not a card of this project.
MAX_CARD_BYTES = 64 * 1024 * 1024
SITE_STEP = "site calibrate"  # a profile of an upload: provenance.verified_by, its figures measured here


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
    ood: dict = field(default_factory=dict)  # out-of-distribution guard (brainclf.inference.ood): statistics, threshold
    faithfulness: dict = field(default_factory=dict)  # Grad-CAM deletion test and randomisation check
    test_predictions: list[dict] = field(default_factory=list)  # path, true, pred, probs
    test_predictions_tta: list[dict] = field(default_factory=list)  # the same with flip TTA
    # Per external dataset name: per-image rows (path, true, pred, probs, sequence, referred, ood, group).
    external_predictions: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    # Uploaded models only: uploaded_by, uploaded, metrics_verified (+ verified, verified_on once re-measured).
    provenance: dict = field(default_factory=dict)
    # Site profiles only (brainclf.site): the site that validated it, its split, figures and scope.
    site: dict = field(default_factory=dict)

    @property
    def contract(self) -> InputContract:
        return InputContract.from_dict(self.input_contract)

    @property
    def measured_site(self) -> dict:
        """The site block where this server wrote it (a site step's card, an upload's profile included); {} for an
        upload's own, which add_model drops, but uploads installed before it did may keep: its uploader's words."""
        made_here = not self.provenance or self.provenance.get("verified_by") == SITE_STEP
        return self.site if self.site and made_here else {}

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
        """How results and caches name the model: 'default 20261126-1a2b3c4d · 1a2b3c4d5e6f' (name, version and
        the file's short hash: a name and version are whatever an uploader wrote)."""
        return f"{f'{self.name} {self.version}'.strip()} · {short_hash(self.file_sha256)}"

    def to_dict(self) -> dict:
        """The card as JSON holds it: a card that is no site profile has no `site` key (older cards read alike)."""
        d = asdict(self)
        if not d["site"]:
            del d["site"]
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> ModelCard:
        """A card from its JSON dict (any schema version), validated (brainclf.model.card_schema); top-level keys
        this version does not know are dropped. Raises ModelError naming the field and the problem."""
        try:
            d = validate_card(d)
        except CardSchemaError as e:
            raise ModelError(f"The model card {source + ' ' if source else ''}is refused: {e}.") from None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> None:
        """Write the card atomically, after checking it against the schema (a card that would be refused
        when read is never written)."""
        path = Path(path)
        d = self.to_dict()
        try:
            validate_card(d)
        except CardSchemaError as e:
            raise ModelError(f"The model card {path.name} was not saved: {e}.") from None
        write_json_atomically(path, d)


def card_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict:
    """Python and the libraries that trained the model; the Keras backend's own (TensorFlow, or JAX under
    KERAS_BACKEND=jax, which imports no TensorFlow) under its name."""
    import keras  # Keras, its backend and scikit-learn: seconds to import, only when a card is written
    import sklearn

    engine = keras.backend.backend()
    return {"python": platform.python_version(), engine: importlib.import_module(engine).__version__,
            "keras": keras.__version__, "numpy": numpy.__version__, "scikit-learn": sklearn.__version__,
            "brainclf": __version__}


def machine_description() -> str:
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
    size = cp.stat().st_size
    if size > MAX_CARD_BYTES:
        raise ModelError(f"The model card {cp.name} is {limits.size_text(size)}, above the limit of "
                         f"{limits.size_text(MAX_CARD_BYTES)} for a card; refused before reading it.")
    return card_from_bytes(cp.read_bytes(), cp.name)


def card_from_bytes(data: bytes, name: str = "card") -> ModelCard:
    """Parse and validate a card's JSON (as read from disk or uploaded). Raises ModelError."""
    try:
        d = json.loads(data)
    except (ValueError, TypeError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelError(f"The model card {name} is not valid JSON: {str(e)[:200]}") from None
    return ModelCard.from_dict(d, name)


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
    check_card_layers(model, card, card_path(path).name)
    check_softmax_output(model, path.name)
    return model, card


def list_models(models_dir: str | Path = "models") -> list[Path]:
    """Models in a folder that have a card beside them."""
    d = Path(models_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.keras") if card_path(p).exists())


def default_model(models_dir: str | Path = "models") -> Path | None:
    """The model a new session starts with: default.keras when it has a card, else the first listed."""
    models = list_models(models_dir)
    default = Path(models_dir) / "default.keras"
    return default if default in models else (models[0] if models else None)


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def check_card_rows(parts: dict[str, list]) -> None:
    """Refuse, before the work, a run whose card could not keep a part's per-image rows (at most
    MAX_PREDICTION_ROWS): the card is saved at the end, and would be refused only then.

    Raises:
        ConfigError: naming the part, its size and the limit.
    """
    for part, samples in parts.items():
        if len(samples) > MAX_PREDICTION_ROWS:
            raise ConfigError(f"{part} would hold {len(samples)} images; a model card keeps the per-image results of "
                              f"at most {MAX_PREDICTION_ROWS}: use a folder of fewer images (or a sample of it).")
