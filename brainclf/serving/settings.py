"""Server-side settings: which data folders users may pick, where models, runs and the audit log live, and
who has which role. Read from a TOML file and the environment, never from a widget.

    file    $BRAINCLF_SETTINGS, else brainclf.toml beside app.py if it exists (brainclf.toml.example shows
            every key); relative paths in it are relative to the file's folder
    env     BRAINCLF_DATA (a data root), BRAINCLF_MODELS, BRAINCLF_RUNS, BRAINCLF_AUDIT_DIR: each wins over
            the file's [paths] entry

The data roots are the only folders the app opens images in: a user picks one *by name* (a selectbox), the
server maps the name to its folder. Without a [data] table they default to $BRAINCLF_DATA and the folders
beside it that look like datasets (the layout of ../shared/data: brain-tumor-mri, external-radiopaedia).
Paths that come from a card or a CSV are resolved and must stay inside a root
(brainclf.evaluation.analysis.resolve_image, brainclf.evaluation.external.read_manifest).
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .. import CLASS_NAMES
from ..errors import ConfigError
from .settings_sections import audit_enabled, refer_rule, table, where_of

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SETTINGS_ENV = "BRAINCLF_SETTINGS"
DEFAULT_SETTINGS_FILE = REPO / "brainclf.toml"
ENV_DATA, ENV_MODELS, ENV_RUNS = "BRAINCLF_DATA", "BRAINCLF_MODELS", "BRAINCLF_RUNS"
ENV_AUDIT_DIR, AUDIT_FILE_NAME = "BRAINCLF_AUDIT_DIR", "brainclf-audit.jsonl"
ROLE_NAMES = ("clinician", "researcher", "admin")  # lowest to highest; brainclf.serving.access gives their rights
SPLIT_NAMES = ("Training", "Testing", "train", "test", "val", "validation")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch: "$" would let a final newline in
# An absolute POSIX path of two or more parts that is not glued to a word before it ("T1/T2", "and/or" stay).
_ABS_PATH = re.compile(r"(?<![\w./~-])/(?:[\w.@+~-]+/)+[\w.@+~-]*")
SERVER_PATH = "<server path>"


@dataclass(frozen=True)
class DataRoot:
    """A folder users may pick by its name; `path` is resolved."""

    name: str
    path: Path


@dataclass(frozen=True)
class RoleRules:
    """Who gets which role: exact e-mails (or '*@domain'), OIDC subjects and groups, per role."""

    emails: dict[str, str] = field(default_factory=dict)  # lower-case e-mail or '*@domain' -> role
    subjects: dict[str, str] = field(default_factory=dict)  # OIDC 'sub' -> role
    groups: dict[str, str] = field(default_factory=dict)  # group name -> role
    groups_claim: str = "groups"  # the ID-token claim that lists a user's groups
    # E-mail rules need the provider to say the address is verified; False: a token without an email_verified
    # claim counts too (for providers that send none and verify every address they issue).
    require_email_verified: bool = True
    # [roles] deny: e-mails ('*@domain' too) and subjects, as written and e-mails lower-cased, with no role whatever
    # else matches (a group claim lives in a sign-in cookie for days: this takes access away at the next page run).
    denied: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Settings:
    data_roots: tuple[DataRoot, ...]
    models_dir: Path
    runs_dir: Path
    audit_dir: Path
    audit_enabled: bool = False  # the audit log's state when the server starts (an admin can switch it)
    roles: RoleRules = field(default_factory=RoleRules)
    source: Path | None = None  # the TOML file read, if any
    # [refer] target_accuracy: the accepted accuracy the refer rule aims at on every source's validation part;
    # None: each model's card says (brainclf.scoring.operating_point.DEFAULT_TARGET for cards with per-source curves).
    refer_target: float | None = None
    # [refer] confidence: the target must be reached by each source's lower bound at this confidence, not only by
    # the share seen on its validation part (brainclf.scoring.operating_point.lower_bound); None: the share seen.
    refer_confidence: float | None = None

    @property
    def audit_file(self) -> Path:
        """The one audit log file: fixed by the server, never chosen by a user."""
        return self.audit_dir / AUDIT_FILE_NAME

    def root_names(self) -> list[str]:
        return [r.name for r in self.data_roots]

    def root(self, name: str | None) -> DataRoot | None:
        return next((r for r in self.data_roots if r.name == name), None)

    def root_of(self, path: str | os.PathLike | None) -> DataRoot | None:
        """The data root a folder is, or lies inside; None for any other folder."""
        if not path:
            return None
        p = Path(path).resolve()
        return next((r for r in self.data_roots if p.is_relative_to(r.path)), None)

    def default_root(self) -> DataRoot | None:
        """$BRAINCLF_DATA's root if it is one, else the first root."""
        env = os.environ.get(ENV_DATA)
        return (self.root_of(env) if env else None) or (self.data_roots[0] if self.data_roots else None)

    def evaluation_folders(self) -> list[str]:
        """What the Evaluation page offers: every root and its split sub-folders ('brain-tumor-mri/Testing'),
        by name. Class folders are not listed: a root of class folders is evaluated whole."""
        out = []
        for r in self.data_roots:
            out.append(r.name)
            try:
                subs = sorted(p.name for p in r.path.iterdir()
                              if p.is_dir() and not p.name.startswith(".") and p.name not in CLASS_NAMES
                              and _NAME.fullmatch(p.name))
            except OSError:
                continue
            out += [f"{r.name}/{s}" for s in subs]
        return out

    def folder(self, choice: str | None) -> Path:
        """The folder behind a name from root_names() or evaluation_folders(); anything else is refused."""
        if choice in self.root_names():
            return self.root(choice).path
        if choice in self.evaluation_folders():
            name, sub = choice.split("/", 1)
            return self.root(name).path / sub
        raise ConfigError(f"{str(choice)[:80]!r} is not one of the data folders this server offers.")

    def redact(self, text: str) -> str:
        """A message with server paths replaced by what a user may see: a data root's name (and the part
        inside it), 'models', 'runs', 'audit'; any other absolute path becomes '<server path>'."""
        names = {r.path: r.name for r in self.data_roots}
        names.update({self.models_dir: "models", self.runs_dir: "runs", self.audit_dir: "audit"})
        pairs = set()
        for path, name in names.items():
            for form in {str(path), os.path.abspath(path), str(Path(path).resolve())}:
                if len(form) > 1:
                    pairs.add((form, name))
        for form, name in sorted(pairs, key=lambda p: -len(p[0])):  # longest first: nested folders
            text = text.replace(form, name)
        return _ABS_PATH.sub(SERVER_PATH, text)


def looks_like_dataset(folder: Path) -> bool:
    """A folder of class folders, of split folders (Training/Testing) or with a manifest.csv: cheap checks,
    no listing of images."""
    try:
        if not folder.is_dir() or folder.name.startswith("."):
            return False
        return (folder / "manifest.csv").is_file() or any((folder / n).is_dir()
                                                           for n in (*CLASS_NAMES, *SPLIT_NAMES))
    except OSError:
        return False


def default_data_roots(data: str | os.PathLike | None) -> list[DataRoot]:
    """Local mode: $BRAINCLF_DATA and the dataset-like folders beside it, named by their folder names."""
    if not data:
        return []
    root = Path(data).expanduser().resolve()
    if not root.is_dir() or root == Path(root.anchor):  # "/": its folders /bin, /etc, … offered as datasets
        logger.warning("%s (%s) is not a dataset folder: no dataset is offered", ENV_DATA, root)
        return []
    roots = [DataRoot(root.name, root)]
    try:
        siblings = sorted(p for p in root.parent.iterdir() if p != root)
    except OSError:
        siblings = []
    roots += [DataRoot(p.name, p.resolve()) for p in siblings if _NAME.fullmatch(p.name) and looks_like_dataset(p)]
    return roots


def settings_file() -> Path | None:
    """$BRAINCLF_SETTINGS (which must exist), else brainclf.toml beside app.py if present."""
    env = os.environ.get(SETTINGS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{SETTINGS_ENV} names a settings file that does not exist ({path.name}).")
        return path
    return DEFAULT_SETTINGS_FILE if DEFAULT_SETTINGS_FILE.is_file() else None


def _data_roots(raw: dict, path: Path, base: Path) -> list[DataRoot]:
    """The [data] table's roots (name = folder, relative to `base`); a folder that does not exist is left out
    with a warning in the server log."""
    roots = []
    for name, value in table(raw, "data", path).items():
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{path.name}: data folder name {name!r} must be letters, digits, '.', '_' or '-'.")
        if not isinstance(value, str):
            raise ConfigError(f"{path.name}: [data] {name} must be a folder path.")
        p = _resolved(value, base, f"[data] {name}", path)
        if p == Path(p.anchor):  # every file of the machine would be inside this "dataset"
            raise ConfigError(f"{path.name}: [data] {name} is the file system's root; name the dataset's folder.")
        if not p.is_dir():
            logger.warning("data root %s (%s) is not a folder; it is not offered", name, p)
            continue
        roots.append(DataRoot(name, p))
    return roots


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Settings from `path` (default: settings_file()) and the environment.

    Raises:
        ConfigError: an unreadable file (not UTF-8, not TOML), an unknown section, key or role, a value of the
            wrong type (a string where a boolean belongs), a bad data-root name. Its message names the settings
            file by its name only, never its folder.
    """
    path = Path(path) if path else settings_file()
    raw = _read_toml(path) if path is not None else {}
    base = path.parent.resolve() if path else REPO
    known = {"paths", "data", "audit", "roles", "refer"}
    if unknown := sorted(set(raw) - known):
        raise ConfigError(f"{path.name}: unknown section(s) {unknown}; expected {sorted(known)}.")
    paths = table(raw, "paths", path)
    if unknown := sorted(set(paths) - {"models", "runs", "audit"}):
        raise ConfigError(f"{path.name}: unknown [paths] key(s) {unknown}; expected models, runs, audit.")

    def folder(env: str, key: str) -> Path:
        """$ENV (relative to the working folder), else [paths] KEY (relative to the file), else KEY beside app.py."""
        if os.environ.get(env):
            return Path(os.environ[env]).expanduser().resolve()
        value = paths.get(key, key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path.name}: [paths] {key} must be a folder path.")
        return _resolved(value, base if key in paths else REPO, f"[paths] {key}", path)

    roots = _data_roots(raw, path, base) if "data" in raw else default_data_roots(os.environ.get(ENV_DATA))
    return Settings(data_roots=tuple(roots), models_dir=folder(ENV_MODELS, "models"),
                    runs_dir=folder(ENV_RUNS, "runs"), audit_dir=folder(ENV_AUDIT_DIR, "audit"),
                    audit_enabled=audit_enabled(raw, path), roles=_role_rules(table(raw, "roles", path), path),
                    source=path, **dict(zip(("refer_target", "refer_confidence"), refer_rule(raw, path))))


def _resolved(value: str, base: Path, what: str, path: Path) -> Path:
    """A settings path made absolute (relative to `base`, '~' expanded); ConfigError for one no file system takes
    (a NUL byte, an unknown user's '~name')."""
    try:
        p = Path(value).expanduser()
        return (p if p.is_absolute() else base / p).resolve()
    except (ValueError, RuntimeError, OSError) as e:
        raise ConfigError(f"{path.name}: {what} is not a usable folder path ({type(e).__name__}).") from None


def _read_toml(path: Path) -> dict:
    """The file's TOML; ConfigError (naming the file, not its folder) when it cannot be read, is not UTF-8
    text or is not TOML."""
    try:
        data = path.read_bytes()
    except OSError as e:  # str(e) would name the full path
        raise ConfigError(f"Cannot read the settings file {path.name}: {e.strerror or type(e).__name__}.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"Cannot read the settings file {path.name}: it is not UTF-8 text (byte {e.start} is "
                          f"0x{data[e.start]:02x}); save it as UTF-8.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Cannot read the settings file {path.name}: it is not valid TOML ({e}).") from None
    except RecursionError:
        raise ConfigError(f"Cannot read the settings file {path.name}: its values are nested too deeply.") from None


def _role_rules(roles: dict, path: Path | None) -> RoleRules:
    """[roles.ROLE] tables with lists `emails`, `subjects`, `groups`; a user matched by several rules gets
    the highest of their roles."""
    where = where_of(path)
    emails, subjects, groups = {}, {}, {}
    groups_claim = roles.get("groups_claim", "groups")
    if not isinstance(groups_claim, str) or not groups_claim:
        raise ConfigError(f"{where}: [roles] groups_claim must be a claim name.")
    require_verified = roles.get("require_email_verified", True)
    if not isinstance(require_verified, bool):
        raise ConfigError(f"{where}: [roles] require_email_verified must be true or false.")
    denied = roles.get("deny", [])
    if not isinstance(denied, list) or not all(isinstance(v, str) and v.strip() for v in denied):
        raise ConfigError(f"{where}: [roles] deny must be a list of e-mails and subjects.")
    for role, rules in roles.items():
        if role in ("groups_claim", "require_email_verified", "deny"):
            continue
        if role not in ROLE_NAMES:
            raise ConfigError(f"{where}: unknown role {role!r}; roles are {', '.join(ROLE_NAMES)}.")
        if not isinstance(rules, dict) or set(rules) - {"emails", "subjects", "groups"}:
            raise ConfigError(f"{where}: [roles.{role}] takes the lists emails, subjects and groups.")
        for key, target in (("emails", emails), ("subjects", subjects), ("groups", groups)):
            values = rules.get(key, [])
            if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
                raise ConfigError(f"{where}: [roles.{role}] {key} must be a list of strings.")
            for v in values:
                v = v.strip().lower() if key == "emails" else v.strip()
                if ROLE_NAMES.index(role) >= ROLE_NAMES.index(target.get(v, ROLE_NAMES[0])):
                    target[v] = role
    return RoleRules(emails=emails, subjects=subjects, groups=groups, groups_claim=groups_claim,
                     require_email_verified=require_verified,
                     denied=frozenset(v.strip() for v in denied) | {v.strip().lower() for v in denied if "@" in v})
