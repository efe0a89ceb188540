"""Reading a card dict: migration from older schema versions, validation, and the messages that name each
refused field and its problem."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .sections import SCHEMA_VERSION, CardSchema


class CardSchemaError(ValueError):
    """The card breaks the schema; str() names the fields and the problems (model.card wraps it in ModelError)."""


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

