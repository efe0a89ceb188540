"""The card schema's building blocks: checked text (labels, descriptions, names, relative paths), numbers with
their ranges (rates, counts, thresholds), and the strict `Section` base every section derives from."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ... import CLASS_NAMES

N = len(CLASS_NAMES)

# ---- text ---------------------------------------------------------------------------------------------------
# Control characters, and the invisible format characters that reorder or hide text (bidi overrides,
# zero-width joiners, BOM, tag characters).
_INVISIBLE = r"\x7f-\x9f\xad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb\U000e0000-\U000e007f"
_LINE_BAD = re.compile(rf"[\x00-\x1f{_INVISIBLE}]")  # one-line labels: no newline or tab either
_TEXT_BAD = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f{_INVISIBLE}]")  # multi-line text: \n, \r and \t allowed
# What makes Markdown or HTML active where the app renders card text: URLs (autolinked), link and image
# syntax, HTML tags, and the backtick that ends a code span.
MARKUP = re.compile(r"://|\bwww\.|\]\(|!\[|<[A-Za-z!/?]|`", re.IGNORECASE)


def _text_check(max_len: int, multiline: bool, markup_ok: bool):
    bad = _TEXT_BAD if multiline else _LINE_BAD

    def check(s: str) -> str:
        m = bad.search(s)
        if m:
            raise ValueError(f"contains the control or invisible character U+{ord(m.group()):04X} at position "
                             f"{m.start()}")
        if not markup_ok and (m := MARKUP.search(s)):
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
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # brainclf.data.sources' source names


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
    """A training file as run state and cards name it: 'rel/path' or 'source::rel/path' (brainclf.data.sources)."""
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


def threshold_or_per_class(v: Any) -> Any:
    """The refer rule as stored in a report: one threshold, or {class: threshold}."""
    if isinstance(v, dict):
        for c, t in v.items():
            if c not in CLASS_NAMES:
                raise ValueError(f"names the class {str(c)[:40]!r}; classes are {', '.join(CLASS_NAMES)}")
            threshold_or_per_class(t)
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0 + 2**-23:
        raise ValueError("must be a threshold in [0, 1] or {class: threshold}")
    return v


def layer_names(v: Any) -> Any:
    """Grad-CAM layer(s): one layer name, or a list of them (one feature map per ensemble member)."""
    names = [v] if isinstance(v, str) else v
    if not isinstance(names, list) or not 1 <= len(names) <= 16 or not all(isinstance(n, str) for n in names):
        raise ValueError("must be a layer name or a list of 1-16 layer names")
    for n in names:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", n):
            raise ValueError(f"{n[:80]!r} is not a layer name (ASCII letters, digits, '_', '.', '-')")
    return v


# ---- base ---------------------------------------------------------------------------------------------------
class Section(BaseModel):
    """Strict types; finite numbers unless a field says otherwise; unknown keys allowed (and not kept)."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


def check_matrix(m: Section) -> None:
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

