"""The small tables of the settings file ([audit], [refer]) and the checks every table shares: a table where
one is expected, no unknown keys, real TOML types (a quoted "false" is a string, not a boolean)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..input.limits import check_refer_confidence, check_refer_target


def audit_enabled(raw: dict, path: Path | None) -> bool:
    """[audit] enabled: a TOML boolean (true/false, unquoted). A string such as "false" is refused: bool("false")
    is True, and a quoted "false" once turned the audit log on."""
    enabled = section(raw, "audit", "enabled", path).get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where_of(path)}: [audit] enabled must be true or false (a TOML boolean, without "
                          f"quotes), not {enabled!r}.")
    return enabled


def refer_rule(raw: dict, path: Path | None) -> tuple[float | None, float | None]:
    """([refer] target_accuracy, [refer] confidence): numbers in limits.REFER_TARGET_RANGE and
    REFER_CONFIDENCE_RANGE, each None when not set (a string is refused, not read)."""
    found = section(raw, "refer", ("target_accuracy", "confidence"), path)
    try:
        return (check_refer_target(found["target_accuracy"]) if "target_accuracy" in found else None,
                check_refer_confidence(found["confidence"]) if "confidence" in found else None)
    except ValueError as e:
        raise ConfigError(f"{where_of(path)}: [refer] {e}.") from None


def where_of(path: Path | None) -> str:
    return path.name if path else "settings"


def section(raw: dict, key: str, only: str | tuple[str, ...], path: Path | None) -> dict:
    """The table `key`, which may hold the key(s) `only`."""
    allowed = (only,) if isinstance(only, str) else only
    found = table(raw, key, path)
    if unknown := sorted(set(found) - set(allowed)):
        raise ConfigError(f"{where_of(path)}: unknown [{key}] key(s) {unknown}; expected {' or '.join(allowed)}.")
    return found


def table(raw: dict, key: str, path: Path | None) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path.name if path else 'settings'}: [{key}] must be a table.")
    return value
