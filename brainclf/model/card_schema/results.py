"""The card schema's measured results: per-image prediction rows and the metrics of a split (validation,
test, test with TTA) or of an external dataset (brainclf.evaluation.evaluate, brainclf.evaluation.external)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from ... import CLASS_NAMES
from .fields import (
    ClassName,
    ConfusionMatrix,
    Count,
    DatasetName,
    Interval,
    Label,
    Message,
    ModelName,
    NonNegative,
    Probs,
    Rate,
    RelPath,
    Section,
    Sha256,
    Temperature,
    Version,
    check_matrix,
    threshold_or_per_class,
)


class PredictionRow(Section):
    """One image's prediction: brainclf.evaluation's evaluate.prediction_rows and external.external_rows."""

    path: RelPath
    true: ClassName
    pred: ClassName
    probs: Probs
    clean: bool = False
    referred: bool = False
    ood: bool = False
    sequence: Label(32) = "unknown"
    subtype: Label(64) = ""
    group: int = 0

    @model_validator(mode="after")
    def _consistent(self):
        if abs(sum(self.probs) - 1.0) > 1e-3:
            raise ValueError(f"probs add up to {sum(self.probs):.4f}, not 1")
        if self.probs[CLASS_NAMES.index(self.pred)] < max(self.probs) - 1e-6:
            raise ValueError(f"pred is {self.pred!r} but another class has the highest probability")
        return self


# Rows a card may hold per list: Kaggle `Testing` has 1,025 and the external set 1,281. Every Evaluation page run
# that shows (or compares with) a card bootstraps its rows: a made-up card of 800,000 rows, under the 64 MiB card
# limit, took the server's memory down (review).
MAX_PREDICTION_ROWS = 50_000
MAX_SITE_SLICES = 200_000  # a site folder's slices a card may list (~12 MB of paths at most)
PredictionRows = Annotated[list[PredictionRow], Field(max_length=MAX_PREDICTION_ROWS)]


class Bootstrap(Section):
    accuracy: Interval | None = None
    recall: dict[ClassName, Interval | None] = {}


class Refer(Section):
    threshold: Annotated[Any, AfterValidator(threshold_or_per_class)]
    coverage: Rate
    accepted: Count
    referred: Count
    accepted_accuracy: Rate | None = None


class PerClass(Section):
    precision: Rate
    recall: Rate
    f1: Rate
    support: Count
    auc: Rate = None


class ModelRef(Section):
    name: Label(64)
    version: Label(64)


class CleanSubset(Section):
    n: Count
    accuracy: Rate | None = None
    macro_auc: Rate | None = None
    recall: dict[ClassName, Rate | None] = {}  # None: no image of the class in the subset
    confusion_matrix: ConfusionMatrix | None = None
    bootstrap: Bootstrap | None = None
    definition: Label(500) = ""

    @model_validator(mode="after")
    def _matrix(self):
        check_matrix(self)
        return self


class SplitMetrics(Section):
    """metrics.val / metrics.test / metrics.test_tta: brainclf.evaluation.evaluate.evaluate_samples."""

    n: Count
    accuracy: Rate | None = None
    loss: NonNegative | None = None
    per_class: dict[ClassName, PerClass] = {}
    confusion_matrix: ConfusionMatrix | None = None
    macro_auc: Rate | None = None
    ece: Rate | None = None
    ece_uncalibrated: Rate | None = None
    temperature: Temperature | None = None
    bootstrap: Bootstrap | None = None
    refer: Refer | None = None
    tta: bool = False
    clean: CleanSubset | None = None
    misclassified: PredictionRows = []
    unreadable: list[Message] = []
    missing_files: Count = 0  # test files of the run's split no longer in its folder when it was finalised
    model: ModelRef = None

    @model_validator(mode="after")
    def _complete(self):
        if self.per_class and set(self.per_class) != set(CLASS_NAMES):
            missing = [c for c in CLASS_NAMES if c not in self.per_class]
            raise ValueError(f"per_class lacks {', '.join(missing)}: it must list every class")
        check_matrix(self)
        return self


class ExternalIntervals(Section):
    accuracy: Interval | None = None
    called_notumor_rate: Interval | None = None
    called_notumor_unflagged_rate: Interval | None = None
    recall: dict[ClassName, Interval | None] = {}
    groups: Count = 0
    resamples: Count = 0
    method: Label(300) = ""


class ExternalSummary(Section):
    """brainclf.evaluation.external.summarise: the figures of a set of external images (or one MR sequence of it)."""

    n: Count
    accuracy: Rate
    classes_present: list[ClassName] = []
    recall: dict[ClassName, Rate] = {}
    confusion_matrix: ConfusionMatrix
    tumour_images: Count
    called_notumor: Count
    called_notumor_rate: Rate | None = None
    called_notumor_unflagged: Count = 0
    called_notumor_unflagged_rate: Rate | None = None
    referred: Count = 0
    ood_flagged: Count = 0
    coverage: Rate
    accepted_accuracy: Rate | None = None
    intervals: ExternalIntervals | None = None

    @model_validator(mode="after")
    def _counts(self):
        check_matrix(self)
        if self.called_notumor > self.tumour_images or self.tumour_images > self.n:
            raise ValueError(f"called_notumor {self.called_notumor} <= tumour_images {self.tumour_images} <= "
                             f"n {self.n} does not hold")
        return self


class ExternalMetrics(ExternalSummary):
    """metrics.external[dataset]: brainclf.evaluation.external.evaluate_external, without its per-image rows."""

    membership: Label(500)
    # Bits within which the split joined slices as one case (brainclf.data.sources.SAME_CASE_THRESHOLD); absent in
    # cards split before 2026-12-06, whose groups joined only re-encodings of one slice (12 bits).
    case_grouping_bits: Annotated[int, Field(ge=0, le=256)] | None = None
    dataset: DatasetName = None
    by_sequence: dict[Label(32), ExternalSummary] = {}
    t1c_tumours_and_normals: ExternalSummary | None = None
    unreadable: Count = 0
    tta: bool = False
    model: ModelRef = None
    predictions: PredictionRows = []


class Metrics(Section):
    val: SplitMetrics | None = None
    test: SplitMetrics | None = None
    test_tta: SplitMetrics | None = None
    external: dict[DatasetName, ExternalMetrics] = {}


class Fingerprint(Section):
    root_name: Label(128) = ""
    counts: dict[Label(64), dict[Label(64), Count]] = {}
    file_list_sha256: Label(64) = ""


class RecipeRunSummary(Section):
    """brainclf.training.refit.SUMMARY_KEYS of one external held-out set."""

    n: Annotated[int, Field(ge=1)]
    accuracy: Rate
    membership: Label(500) = ""
    called_notumor_rate: Rate | None = None
    called_notumor_unflagged_rate: Rate | None = None
    coverage: Rate | None = None
    tumour_images: Count | None = None  # linked since 2026-12-07, with the three below
    called_notumor_unflagged: Count | None = None
    classes_present: list[ClassName] | None = None
    tta: bool = False
    case_grouping_bits: Annotated[int, Field(ge=0, le=256)] | None = None


class FindingRates(Section):
    """brainclf.scoring.rates.sensitivity_specificity: one finding's row."""

    finding: Label(64)
    positives: Count
    negatives: Count
    sensitivity: Rate | None = None
    specificity: Rate | None = None


class RecipeRun(Section):
    """extra.recipe_run of a --refit model: its recipe's split run and that run's external held-out figures
    (brainclf.training.refit.link_recipe_run), which the app shows for the refit."""

    model: ModelName
    version: Version = ""
    file_sha256: Sha256
    external: dict[DatasetName, RecipeRunSummary] = Field(min_length=1)
    sensitivity_specificity: dict[DatasetName, list[FindingRates]] = {}


class Extra(Section):
    """The card's free-form `extra`: any key may be there; the ones the app reads are checked."""

    recipe_run: RecipeRun | None = None


def _not_empty(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


class Maker(Section):
    """Who made a model on this server: the signed-in person who started its training or site step (their name and
    account; brainclf.model.uploads.maker_record). Never taken from an upload."""

    name: Label(128) | None = None
    account: Label(128) | None = None


class SiteProfile(Section):
    """brainclf.site: the site whose labelled slices validated (calibrated, maybe adapted) this model."""

    name: DatasetName
    scope: Annotated[Label(200), AfterValidator(_not_empty)]
    adapted: bool
    target: Rate
    base_model: dict[Label(32), Label(128)] = {}
    fingerprint: Fingerprint = None
    split: dict[Label(32), Count] = {}  # parts: tune, calibration, heldout
    heldout: dict[Label(32), dict[str, Any]] = {}  # "before", "calibrated", "adapted": held-out summaries
    kaggle_test: dict[Label(32), dict[str, Any]] = {}  # "before", "after": the forgetting check
    adapt: dict[str, Any] = {}
    groups: Count = 0
    # The site's slices the model was tuned, calibrated or had its epoch chosen on (its adaptation part, relative
    # to the site folder): an evaluation of that folder leaves them out, as it does a model's training files.
    used: Annotated[list[RelPath], Field(max_length=MAX_SITE_SLICES)] = []
    made_by: Maker | None = None  # who ran the step that made it (cards before this field: not recorded)
