"""The model card's schema (version 2): what each section may hold, so a card that loads cannot crash its readers.

A card is JSON written by brainclf.train (trusted) or uploaded by a user (untrusted). Every key that the
package or the app reads is typed here with its range: rates in [0, 1], counts >= 0, 4 x 4 confusion
matrices, class names from brainclf.CLASS_NAMES, relative image paths without '..', identifiers in ASCII,
one-line labels without control characters or markup (links, images, HTML). Unknown keys inside sections
are allowed (the training section grows with the project) and left unchecked; known keys are checked.

Validation never changes the card: `validate_card` returns the (migrated) dict it was given, and that
dict is what ModelCard holds, so a save/load round trip keeps every value. Numbers are checked strictly:
"0.9" (a string) is not a rate, true is not a count.

Versions: 1 = cards written before this schema (no `schema_version` key; the bundled models/*.json).
`migrate` reads them as version 2: the same content plus `schema_version: 2` and an empty `provenance`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import CLASS_NAMES, PRECISIONS

SCHEMA_VERSION = 2
N = len(CLASS_NAMES)

# ---- text ---------------------------------------------------------------------------------------------------
# Control characters, and the invisible format characters that reorder or hide text (bidi overrides,
# zero-width joiners, BOM, tag characters).
_INVISIBLE = r"\x7f-\x9f\xad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb\U000e0000-\U000e007f"
_LINE_BAD = re.compile(rf"[\x00-\x1f{_INVISIBLE}]")  # one-line labels: no newline or tab either
_TEXT_BAD = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f{_INVISIBLE}]")  # multi-line text: \n, \r and \t allowed
# What makes Markdown or HTML active where the app renders card text: URLs (autolinked), link and image
# syntax, HTML tags, and the backtick that ends a code span.
_MARKUP = re.compile(r"://|\bwww\.|\]\(|!\[|<[A-Za-z!/?]|`", re.IGNORECASE)


def _text_check(max_len: int, multiline: bool, markup_ok: bool):
    bad = _TEXT_BAD if multiline else _LINE_BAD

    def check(s: str) -> str:
        m = bad.search(s)
        if m:
            raise ValueError(f"contains the control or invisible character U+{ord(m.group()):04X} at position "
                             f"{m.start()}")
        if not markup_ok and (m := _MARKUP.search(s)):
            raise ValueError(f"contains {m.group()!r}: card text may not hold links, images, HTML or backticks")
        return s

    return Annotated[str, Field(max_length=max_len), AfterValidator(check)]


def Label(max_len: int = 200):  # noqa: N802 - used like a type
    """One line of plain text: no control or invisible characters, no links, images, HTML or backticks."""
    return _text_check(max_len, multiline=False, markup_ok=False)


Description = _text_check(2000, multiline=True, markup_ok=False)
Licence = _text_check(2000, multiline=True, markup_ok=True)  # a LICENCE file's text (not rendered as Markdown)
Message = _text_check(4000, multiline=True, markup_ok=True)  # error messages kept in a report


def _pattern(rx: str, what: str, max_len: int):
    compiled = re.compile(rx)

    def check(s: str) -> str:
        if not compiled.fullmatch(s):
            raise ValueError(f"must be {what}")
        return s

    return Annotated[str, Field(max_length=max_len), AfterValidator(check)]


ModelName = _pattern(r"[A-Za-z0-9_-]{1,64}", "1-64 ASCII letters, digits, '-' or '_'", 64)
Identifier = _pattern(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}", "1-64 ASCII letters, digits, '_', '.', '+' or '-'", 64)
Version = _pattern(r"([A-Za-z0-9_][A-Za-z0-9_.+-]{0,63})?", "empty or ASCII letters, digits, '_', '.', '+' or '-'",
                   64)
LayerName = _pattern(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "a layer name (ASCII letters, digits, '_', '.', '-')", 128)
DatasetName = _pattern(r"[A-Za-z0-9][A-Za-z0-9 ._+-]{0,63}",
                       "a dataset name: 1-64 ASCII letters, digits, spaces, '.', '_', '+' or '-'", 64)
Sha256 = _pattern(r"[0-9a-f]{64}", "the model file's SHA-256: 64 lowercase hex digits", 64)
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # brainclf.sources' source names


def _relative_path(s: str) -> str:
    """A path relative to a data root, as cards store them (POSIX): refuses absolute paths and '..'."""
    if not s:
        raise ValueError("must not be empty")
    if m := _LINE_BAD.search(s):
        raise ValueError(f"contains the control character U+{ord(m.group()):04X}")
    if s.startswith("/") or re.match(r"[A-Za-z]:", s):
        raise ValueError(f"must be a relative path, got the absolute path {s[:80]!r}")
    if "\\" in s:
        raise ValueError(f"must use '/' between folders, got {s[:80]!r}")
    if ".." in s.split("/"):
        raise ValueError(f"must stay inside the data folder: '..' is not allowed ({s[:80]!r})")
    return s


def _stored_path(s: str) -> str:
    """A training file as run state and cards name it: 'rel/path' or 'source::rel/path' (brainclf.sources)."""
    source, sep, rel = s.partition("::")
    if sep and not _SOURCE.fullmatch(source):
        raise ValueError(f"names the source {source[:80]!r}, not a source name")
    _relative_path(rel if sep else s)
    return s


RelPath = Annotated[str, Field(max_length=1024), AfterValidator(_relative_path)]
StoredPath = Annotated[str, Field(max_length=1100), AfterValidator(_stored_path)]

# ---- numbers ------------------------------------------------------------------------------------------------
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0.0)]
# The refer rule's thresholds: train.choose_refer_thresholds puts "no tumour" one float32 step above the most
# confident missed tumour, which is 1 + 2**-23 when that miss had probability 1 ("always refer").
Threshold = Annotated[float, Field(ge=0.0, le=1.0 + 2**-23)]
# Temperature divides log-probabilities: far from 1 it turns every probability into 0/1 or NaN.
Temperature = Annotated[float, Field(ge=1e-3, le=1e3)]
Correlation = Annotated[float, Field(ge=-1.0 - 1e-9, le=1.0 + 1e-9)]
Score = Annotated[float, Field(ge=0.0, le=1.0 + 1e-6)]  # averages of float32 probabilities
HistoryValue = Annotated[float, Field(allow_inf_nan=True)]  # a diverged training logs NaN losses
ClassName = Literal[CLASS_NAMES]
Interval = Annotated[list[Rate], Field(min_length=2, max_length=2)]
Probs = Annotated[list[Rate], Field(min_length=N, max_length=N)]
ConfusionMatrix = Annotated[list[Annotated[list[Count], Field(min_length=N, max_length=N)]],
                            Field(min_length=N, max_length=N)]


def _threshold_or_per_class(v: Any) -> Any:
    """The refer rule as stored in a report: one threshold, or {class: threshold}."""
    if isinstance(v, dict):
        for c, t in v.items():
            if c not in CLASS_NAMES:
                raise ValueError(f"names the class {str(c)[:40]!r}; classes are {', '.join(CLASS_NAMES)}")
            _threshold_or_per_class(t)
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0 + 2**-23:
        raise ValueError("must be a threshold in [0, 1] or {class: threshold}")
    return v


def _layers(v: Any) -> Any:
    """Grad-CAM layer(s): one layer name, or a list of them (one feature map per ensemble member)."""
    names = [v] if isinstance(v, str) else v
    if not isinstance(names, list) or not 1 <= len(names) <= 16 or not all(isinstance(n, str) for n in names):
        raise ValueError("must be a layer name or a list of 1-16 layer names")
    for n in names:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", n):
            raise ValueError(f"{n[:80]!r} is not a layer name (ASCII letters, digits, '_', '.', '-')")
    return v


# ---- sections -----------------------------------------------------------------------------------------------
class Section(BaseModel):
    """Strict types; finite numbers unless a field says otherwise; unknown keys allowed (and not kept)."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


def _check_matrix(m: Section) -> None:
    """A confusion matrix must add up to n, and its diagonal to the accuracy."""
    cm, n = getattr(m, "confusion_matrix", None), m.n
    if cm is None:
        return
    total, correct = sum(map(sum, cm)), sum(cm[i][i] for i in range(N))
    if total != n:
        raise ValueError(f"confusion_matrix counts {total} images but n is {n}")
    acc = getattr(m, "accuracy", None)
    if acc is not None and n and abs(acc - correct / n) > 1e-6:
        raise ValueError(f"accuracy {acc:.6f} does not match the confusion matrix ({correct}/{n})")


class PredictionRow(Section):
    """One image's prediction: brainclf.evaluate.prediction_rows and brainclf.external.external_rows."""

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


class Bootstrap(Section):
    accuracy: Interval | None = None
    recall: dict[ClassName, Interval | None] = {}


class Refer(Section):
    threshold: Annotated[Any, AfterValidator(_threshold_or_per_class)]
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
    recall: dict[ClassName, Rate] = {}
    confusion_matrix: ConfusionMatrix | None = None
    bootstrap: Bootstrap | None = None
    definition: Label(500) = ""

    @model_validator(mode="after")
    def _matrix(self):
        _check_matrix(self)
        return self


class SplitMetrics(Section):
    """metrics.val / metrics.test / metrics.test_tta: brainclf.evaluate.evaluate_samples."""

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
    misclassified: list[PredictionRow] = []
    unreadable: list[Message] = []
    model: ModelRef = None

    @model_validator(mode="after")
    def _complete(self):
        if self.per_class and set(self.per_class) != set(CLASS_NAMES):
            missing = [c for c in CLASS_NAMES if c not in self.per_class]
            raise ValueError(f"per_class lacks {', '.join(missing)}: it must list every class")
        _check_matrix(self)
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
    """brainclf.external.summarise: the figures of a set of external images (or one MR sequence of it)."""

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
        _check_matrix(self)
        if self.called_notumor > self.tumour_images or self.tumour_images > self.n:
            raise ValueError(f"called_notumor {self.called_notumor} <= tumour_images {self.tumour_images} <= "
                             f"n {self.n} does not hold")
        return self


class ExternalMetrics(ExternalSummary):
    """metrics.external[dataset]: brainclf.external.evaluate_external, without its per-image rows."""

    membership: Label(500)
    dataset: DatasetName = None
    by_sequence: dict[Label(32), ExternalSummary] = {}
    t1c_tumours_and_normals: ExternalSummary | None = None
    unreadable: Count = 0
    tta: bool = False
    model: ModelRef = None
    predictions: list[PredictionRow] = []


class Metrics(Section):
    val: SplitMetrics | None = None
    test: SplitMetrics | None = None
    test_tta: SplitMetrics | None = None
    external: dict[DatasetName, ExternalMetrics] = {}


class Calibration(Section):
    """brainclf.train.calibrate: temperature scaling and the refer rule, fitted on validation."""

    fitted_on: Label(300) = ""
    refer_target_accuracy: Rate = 0.999
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
    """brainclf.ood.fit_feature_model: mean(s) and precision of the training features, and the threshold."""

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


class Fingerprint(Section):
    root_name: Label(128) = ""
    counts: dict[Label(64), dict[Label(64), Count]] = {}
    file_list_sha256: Label(64) = ""


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
    """brainclf.train: how the model was trained. Large and growing: only the keys read elsewhere are typed."""

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


class InputContractSchema(Section):
    """brainclf.preprocess.InputContract. No unknown keys: preprocessing would silently ignore them, so a card
    asking for anything else (another padding, a normalisation) would be run otherwise than it says."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    size: Annotated[int, Field(ge=32, le=1024)]
    channels: Literal[1, 3]
    padding: Literal["centre-black"] = "centre-black"
    resample: Literal["bilinear"] = "bilinear"


class Provenance(Section):
    """Who put the model here: set by brainclf.card.add_model (never taken from the upload) and
    brainclf.card.verify_uploaded_model."""

    uploaded_by: Label(128) | None = None
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
    gradcam_layer: Annotated[Any, AfterValidator(_layers)] = "last_conv"
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
    test_predictions: list[PredictionRow] = []
    test_predictions_tta: list[PredictionRow] = []
    external_predictions: dict[DatasetName, list[PredictionRow]] = {}
    extra: dict[str, Any] = {}
    provenance: Provenance | None = None

    @field_validator("ood", "provenance", mode="before")
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


# ---- versions and messages ----------------------------------------------------------------------------------
class CardSchemaError(ValueError):
    """The card breaks the schema; str() names the fields and the problems (brainclf.card wraps it in ModelError)."""


def migrate(d: Any) -> dict:
    """A card dict of any known schema version as version 2 (a shallow copy; `d` is left as it was)."""
    if not isinstance(d, dict):
        raise CardSchemaError(f"a card must be a JSON object, got {_shown(d)}")
    version = d.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CardSchemaError(f"schema_version must be a whole number >= 1 (got {_shown(version)})")
    if version > SCHEMA_VERSION:
        raise CardSchemaError(f"schema_version {version} was written by a newer brainclf; this one reads cards up "
                              f"to version {SCHEMA_VERSION}")
    d = dict(d)
    if version == 1:  # version 2 only added these two keys
        d["schema_version"] = 2
        d.setdefault("provenance", {})
    return d


def validate_card(d: Any) -> dict:
    """Migrate and validate a card dict; returns the migrated dict. Raises CardSchemaError."""
    d = migrate(d)
    try:
        CardSchema.model_validate(d)
    except ValidationError as e:
        raise CardSchemaError(format_errors(e)) from None
    except RecursionError:
        raise CardSchemaError("the card is nested too deeply") from None
    return d


_PLAIN = {"model_type": "must be a JSON object", "dict_type": "must be a JSON object", "list_type": "must be a list",
          "float_type": "must be a number", "int_type": "must be a whole number", "string_type": "must be text",
          "bool_type": "must be true or false", "missing": "is missing", "finite_number": "must be a finite number",
          "extra_forbidden": "is not a known key here"}


def _shown(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    if isinstance(v, str):
        return f"the text {v[:60]!r}" + ("…" if len(v) > 60 else "")
    return repr(v)[:60]


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            out += " (key)"  # the key itself is wrong, not its value
        else:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "card"


def format_errors(e: ValidationError, limit: int = 5) -> str:
    """'field.path: problem (got value)' for the first `limit` problems, and how many more there are."""
    errors = e.errors(include_url=False)
    parts = []
    for err in errors[:limit]:
        msg = _PLAIN.get(err["type"]) or (err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
                                          .replace("List should have", "must have").replace(" after validation", ""))
        got = "" if err["type"] in ("missing", "value_error") else f" (got {_shown(err.get('input'))})"
        parts.append(f"{_where(err['loc'])}: {msg}{got}")
    more = len(errors) - limit
    return "; ".join(parts) + (f"; and {more} more problem{'s' * (more > 1)}" if more > 0 else "")


def display_text(s: Any, max_len: int = 500) -> str:
    """Card text made safe to show as plain text: control and invisible characters removed (newlines kept),
    at most `max_len` characters (cut with '…'). Show it with st.text or in a code span, never as Markdown."""
    if s is None:
        return ""
    s = str(s).replace("\r\n", "\n").replace("\t", " ")
    kept = []
    for ch in s:
        cat = unicodedata.category(ch)
        if ch == "\n":
            kept.append(ch)
        elif cat in ("Zl", "Zp"):
            kept.append("\n")
        elif cat[0] != "C":  # Cc control, Cf format (bidi, zero-width), Cs, Co, Cn
            kept.append(ch)
        if len(kept) > max_len:
            break
    out = "".join(kept).strip()
    return out if len(out) <= max_len else out[:max(max_len - 1, 0)].rstrip() + "…"


def plain_label(s: Any, max_len: int = 200) -> str:
    """`s` made into a one-line label the schema accepts (for values brainclf writes, such as a user name)."""
    s = re.sub(r"[<>\[\]`]", "", display_text(s, max_len).replace("\n", " "))
    while (cleaned := _MARKUP.sub("", s)) != s:  # what is left: '://' and 'www.'
        s = cleaned
    return s
