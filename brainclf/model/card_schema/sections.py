"""The card schema's other sections (calibration, OOD guard, faithfulness, training, input contract,
provenance) and `CardSchema`, the whole card, with the checks that span sections."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from ... import CLASS_NAMES, CROPS, INTENSITIES, PRECISIONS, TRAINING_BACKENDS
from .fields import (
    ClassName,
    Correlation,
    Count,
    DatasetName,
    Description,
    HistoryValue,
    Identifier,
    Label,
    LayerName,
    Licence,
    ModelName,
    N,
    NonNegative,
    Rate,
    Score,
    Section,
    Sha256,
    StoredPath,
    Temperature,
    Threshold,
    Version,
    layer_names,
)
from .results import Extra, Fingerprint, Maker, Metrics, PredictionRows, SiteProfile

SCHEMA_VERSION = 2


class RiskCoverage(Section):
    """brainclf.scoring.operating_point.risk_coverage: answered and right validation slices at each confidence cut."""

    n: Count
    threshold: list[Threshold]
    answered: list[Count]
    correct: list[Count]

    @model_validator(mode="after")
    def _consistent(self):
        if not len(self.threshold) == len(self.answered) == len(self.correct):
            raise ValueError("threshold, answered and correct must have one entry per cut")
        if any(c > a for a, c in zip(self.answered, self.correct)) or any(a > self.n for a in self.answered):
            raise ValueError("more slices right than answered, or answered than measured")
        if self.answered != sorted(self.answered) or self.threshold != sorted(self.threshold, reverse=True):
            raise ValueError("cuts must go from the highest threshold down")
        return self


class OperatingCurves(Section):
    curves: dict[DatasetName, RiskCoverage]
    worst_notumor_miss: Rate = 0.0


class Calibration(Section):
    """brainclf.scoring.trust.fit_calibration: temperature scaling and the refer rule, fitted on validation."""

    fitted_on: Label(300) = ""
    refer_target_accuracy: Rate = 0.999
    refer_confidence: Rate | None = None  # the refer rule asked this lower bound to reach the target (None: the share)
    temperature: Temperature = 1.0
    temperature_tta: Temperature = 1.0
    val_ece_before: Rate = 0.0
    val_ece_after: Rate = 0.0
    val_ece_before_tta: Rate = 0.0
    val_ece_after_tta: Rate = 0.0
    refer_threshold: Threshold = 0.0
    refer_threshold_tta: Threshold = 0.0
    refer_thresholds: dict[ClassName, Threshold] = {}
    refer_thresholds_tta: dict[ClassName, Threshold] = {}
    val_nll: NonNegative = 0.0
    val_nll_tta: NonNegative = 0.0
    val_accuracy: Rate = 0.0
    val_accuracy_tta: Rate = 0.0
    tta_default: bool = False
    operating: OperatingCurves | None = None
    operating_tta: OperatingCurves | None = None


class OodMeasured(Section):
    test_flagged: Count = 0
    test_n: Count = 0
    non_mri_n: Count
    non_mri_flagged: Count
    non_mri_missed: list[Label(128)] = []

    @model_validator(mode="after")
    def _counts(self):
        if self.test_flagged > self.test_n or self.non_mri_flagged > self.non_mri_n:
            raise ValueError("more images flagged than measured")
        return self


class Ood(Section):
    """brainclf.inference.ood.fit_feature_model: mean(s) and precision of the training features, and the threshold."""

    means: Annotated[list[Annotated[list[float], Field(min_length=1)]], Field(min_length=1)]
    precision: list[list[float]]
    threshold: NonNegative
    quantile: Rate = None
    threshold_from: Label(300) = ""
    colour_threshold: NonNegative = 15.0
    layers: list[LayerName] = []
    layer: LayerName = None  # cards before the OOD guard used several layers
    features: Label(200) = ""
    fitted_on: Label(300) = ""
    measured: OodMeasured = None

    @model_validator(mode="after")
    def _shapes(self):
        dims = len(self.means[0])
        if any(len(row) != dims for row in self.means):
            raise ValueError("means rows differ in length")
        if len(self.precision) != dims or any(len(row) != dims for row in self.precision):
            raise ValueError(f"precision must be a {dims} x {dims} matrix (means have {dims} features)")
        return self


class Deletion(Section):
    n: Count
    fractions: list[Rate]
    gradcam_curve: list[Score]
    random_curve: list[Score]
    gradcam_auc: Score
    random_auc: Score
    share_gradcam_lower: Rate

    @model_validator(mode="after")
    def _lengths(self):
        if not len(self.fractions) == len(self.gradcam_curve) == len(self.random_curve):
            raise ValueError("fractions, gradcam_curve and random_curve differ in length")
        return self


class Randomisation(Section):
    n: Count
    mean_spearman: Correlation
    max_spearman: Correlation


class Faithfulness(Section):
    deletion: Deletion = None
    randomisation: Randomisation = None


History = dict[Label(64), list[HistoryValue]]


class SourceInfo(Section):
    name: Label(64)
    primary: bool = False
    weight: NonNegative = 1.0
    licence: Licence = ""
    fingerprint: Fingerprint = None


class Member(Section):
    history: History


class TrainFiles(Section):
    train: list[StoredPath] = []
    val: list[StoredPath] = []


class TrainConfigInfo(Section):
    precision: Literal[PRECISIONS] = "float32"


class Training(Section):
    """brainclf.training: how the model was trained. Large and growing: only the keys read elsewhere are typed."""

    config: TrainConfigInfo = None
    fingerprint: Fingerprint = None
    history: History = {}
    best_epoch: Count | None = None
    epochs_run: Count | None = None
    stopped_early: bool = False
    stopped_reason: Label(500) = ""
    train_seconds: NonNegative = 0.0
    started: Label(64) = ""
    finished: Label(64) = ""
    sizes: dict[Label(32), Count] = {}
    members: list[Member] = []
    files: TrainFiles = None
    sources: list[SourceInfo] = []
    backend: Literal[TRAINING_BACKENDS] = "tensorflow"  # the Keras backend that trained it (older cards: TF)
    started_by: Maker | None = None  # who started it in the app (the CLI's and older cards: not recorded)


class InputContractSchema(Section):
    """brainclf.input.preprocess.InputContract. No unknown keys: preprocessing would silently ignore them, so a card
    asking for anything else (another padding, a normalisation) would be run otherwise than it says."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    size: Annotated[int, Field(ge=32, le=1024)]
    channels: Literal[1, 3]
    padding: Literal["centre-black"] = "centre-black"
    resample: Literal["bilinear"] = "bilinear"
    crop: Literal[CROPS] = "none"
    intensity: Literal[INTENSITIES] = "none"


class Provenance(Section):
    """Who put the model here: set by brainclf.model.uploads.add_model (never taken from the upload) and
    brainclf.evaluation.provenance.verify_uploaded_model."""

    uploaded_by: Label(128) | None = None
    uploaded_by_id: Label(128) | None = None  # the uploader's account ('sub:…' or 'email:…'), which a name is not
    uploaded: Label(64)
    metrics_verified: bool
    verified: Label(64) = None
    verified_on: dict[str, Any] = None
    claimed_test_accuracy: Rate | None = None


class CardSchema(Section):
    schema_version: Literal[SCHEMA_VERSION]
    name: ModelName
    architecture: Identifier
    input_contract: InputContractSchema
    version: Version = ""
    description: Description = ""
    class_names: list[str] = list(CLASS_NAMES)
    display_names: dict[ClassName, Label(64)] = {}
    gradcam_layer: Annotated[Any, AfterValidator(layer_names)] = "last_conv"
    params: Count = 0
    file_sha256: Sha256
    created: Label(64) = ""
    libraries: dict[Label(64), Label(64)] = {}
    machine: Label(200) = ""
    training: Training = None
    metrics: Metrics = None
    calibration: Calibration = None
    ood: Ood | None = None
    faithfulness: Faithfulness = None
    test_predictions: PredictionRows = []
    test_predictions_tta: PredictionRows = []
    external_predictions: dict[DatasetName, PredictionRows] = {}
    extra: Extra = None
    provenance: Provenance | None = None
    site: SiteProfile | None = None

    @field_validator("ood", "provenance", "site", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        return None if v == {} else v  # {}: no OOD guard fitted / not uploaded

    @field_validator("class_names")
    @classmethod
    def _classes(cls, v):
        if v != list(CLASS_NAMES):
            raise ValueError(f"lists classes {v!r:.200}; this version of brainclf expects {list(CLASS_NAMES)}")
        return v

    @model_validator(mode="after")
    def _rows_match_metrics(self):
        """Stored rows and the metrics shown beside them describe the same images."""
        metrics = self.metrics or Metrics()
        for rows_key, split in (("test_predictions", "test"), ("test_predictions_tta", "test_tta")):
            rows, m = getattr(self, rows_key), getattr(metrics, split)
            if rows and m is not None:
                if len(rows) != m.n:
                    raise ValueError(f"{rows_key} has {len(rows)} rows but metrics.{split}.n is {m.n}")
                correct = sum(r.true == r.pred for r in rows)
                if m.confusion_matrix is not None and correct != sum(m.confusion_matrix[i][i] for i in range(N)):
                    raise ValueError(f"{rows_key} has {correct} correct rows but metrics.{split}.confusion_matrix "
                                     "says otherwise")
        for name, rows in self.external_predictions.items():
            m = metrics.external.get(name)
            if m is not None and len(rows) != m.n:
                raise ValueError(f"external_predictions[{name!r}] has {len(rows)} rows but "
                                 f"metrics.external[{name!r}].n is {m.n}")
        return self

