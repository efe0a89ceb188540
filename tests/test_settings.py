"""brainclf.serving.settings: server-side settings from a TOML file and the environment; data roots by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainclf.errors import ConfigError
from brainclf.serving import SERVER_PATH, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("BRAINCLF_SETTINGS", "BRAINCLF_DATA", "BRAINCLF_MODELS", "BRAINCLF_RUNS", "BRAINCLF_AUDIT_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("brainclf.serving.settings.DEFAULT_SETTINGS_FILE", tmp_path / "no-brainclf.toml")


def _layout(base: Path) -> Path:
    """base/data/{brain-mri (Training, Testing), external (glioma + manifest.csv), notes (no dataset)}."""
    for sub in ("brain-mri/Training/glioma", "brain-mri/Testing/glioma", "external/glioma", "notes/misc"):
        (base / "data" / sub).mkdir(parents=True)
    (base / "data" / "external" / "manifest.csv").write_text("file,sequence\n")
    return base / "data"


def test_local_mode_roots_are_brainclf_data_and_dataset_like_siblings(tmp_path, monkeypatch):
    data = _layout(tmp_path)
    monkeypatch.setenv("BRAINCLF_DATA", str(data / "brain-mri"))
    s = load_settings()
    assert s.root_names() == ["brain-mri", "external"]  # notes/ is not a dataset
    assert s.root("brain-mri").path == (data / "brain-mri").resolve()
    assert s.default_root().name == "brain-mri"
    assert s.evaluation_folders() == ["brain-mri", "brain-mri/Testing", "brain-mri/Training", "external"]
    assert s.folder("brain-mri/Testing") == (data / "brain-mri" / "Testing").resolve()
    assert s.source is None and not s.roles.emails


def test_no_data_configured_means_no_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(tmp_path / "none.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()
    monkeypatch.delenv("BRAINCLF_SETTINGS")
    assert load_settings().data_roots == ()


@pytest.mark.parametrize("value", ["/", "/no/such/folder"])
def test_brainclf_data_that_names_no_dataset_offers_none_and_says_so_in_the_log(monkeypatch, caplog, value):
    """"/" offered a dataset named "" with /bin, /etc, … as its folders; a missing folder was dropped without a word."""
    monkeypatch.setenv("BRAINCLF_DATA", value)
    with caplog.at_level("WARNING", logger="brainclf.serving.settings"):
        assert load_settings().data_roots == ()
    assert f"BRAINCLF_DATA ({value}) is not a dataset folder" in caplog.text


@pytest.mark.parametrize("choice", ["/etc", "../brain-mri", "brain-mri/../notes", "brain-mri/Testing/glioma",
                                    "notes", "", None, "brain-mri/"])
def test_only_offered_folders_resolve(tmp_path, monkeypatch, choice):
    data = _layout(tmp_path)
    monkeypatch.setenv("BRAINCLF_DATA", str(data / "brain-mri"))
    with pytest.raises(ConfigError, match="not one of the data folders"):
        load_settings().folder(choice)


def test_toml_file_names_roots_folders_audit_and_roles(tmp_path, monkeypatch):
    data = _layout(tmp_path)
    toml = tmp_path / "conf" / "brainclf.toml"
    toml.parent.mkdir()
    toml.write_text(f"""
[paths]
models = "models"          # relative to this file
audit = "{tmp_path / 'audit'}"

[data]
kaggle = "{data / 'brain-mri'}"
other = "../data/external"
missing = "{tmp_path / 'nowhere'}"

[audit]
enabled = true

[roles]
groups_claim = "roles"
[roles.admin]
emails = ["Boss@Hospital.example"]
[roles.researcher]
groups = ["research"]
subjects = ["abc-123"]
[roles.clinician]
emails = ["*@hospital.example", "boss@hospital.example"]
""")
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    monkeypatch.setenv("BRAINCLF_DATA", str(data / "brain-mri"))  # a [data] table wins over it
    monkeypatch.setenv("BRAINCLF_RUNS", str(tmp_path / "runs-env"))  # the environment wins over [paths]
    s = load_settings()
    assert s.root_names() == ["kaggle", "other"]  # a root that is not a folder is left out
    assert s.root("other").path == (data / "external").resolve()
    assert s.models_dir == (toml.parent / "models").resolve()
    assert s.runs_dir == (tmp_path / "runs-env").resolve()
    assert s.audit_file == (tmp_path / "audit" / "brainclf-audit.jsonl").resolve()
    assert s.audit_enabled is True and s.source == toml
    assert s.roles.emails == {"boss@hospital.example": "admin", "*@hospital.example": "clinician"}  # highest kept
    assert s.roles.groups == {"research": "researcher"} and s.roles.subjects == {"abc-123": "researcher"}
    assert s.roles.groups_claim == "roles"


@pytest.mark.parametrize("body,match", [
    ("[roles.superuser]\nemails = ['a@b.c']", "unknown role"),
    ("[roles.admin]\nemails = 'a@b.c'", "list of strings"),
    ("[roles.admin]\nusers = ['a@b.c']", "takes the lists"),
    ("[data]\n'../up' = '/tmp'", "letters, digits"),
    ("[data]\neverything = '/'", "everything is the file system's root"),
    ("[paths]\nmodel = 'x'", "unknown \\[paths\\]"),
    ("[server]\nx = 1", "unknown section"),
    ("not toml [", "Cannot read"),
    ("[refer]\ntarget_accuracy = '0.98'", "refer target must be an accepted accuracy"),
    ("[refer]\ntarget_accuracy = 0.5", "between 0.8"),
    ("[refer]\ntarget_accuracy = true", "refer target"),
    ("[refer]\ntarget = 0.98", "unknown \\[refer\\]"),
    ("[refer]\nconfidence = '0.95'", "refer confidence must be a probability"),
    ("[refer]\nconfidence = 0.3", "between 0.5"),
    ("[refer]\nconfidence = true", "refer confidence"),
    ("[refer]\nlevel = 0.95", "expected target_accuracy or confidence"),
])
def test_bad_settings_are_refused_with_a_clear_message(tmp_path, monkeypatch, body, match):
    toml = tmp_path / "brainclf.toml"
    toml.write_text(body)
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    with pytest.raises(ConfigError, match=match):
        load_settings()


def test_redact_replaces_server_paths_with_names(tmp_path, monkeypatch):
    data = _layout(tmp_path)
    monkeypatch.setenv("BRAINCLF_DATA", str(data / "brain-mri"))
    monkeypatch.setenv("BRAINCLF_MODELS", str(tmp_path / "models"))
    s = load_settings()
    msg = (f"{data / 'brain-mri' / 'Testing'} has only a Training split; {tmp_path / 'models' / 'x.keras'} "
           f"and {data / 'external'}/glioma; /srv/secret/place is private; T1/T2 and/or 1/2 stay.")
    out = s.redact(msg)
    assert str(tmp_path) not in out
    assert out.startswith("brain-mri/Testing has only a Training split; models/x.keras and external/glioma;")
    assert f"{SERVER_PATH} is private" in out and "T1/T2 and/or 1/2 stay." in out


def test_the_shipped_examples_parse():
    import tomllib

    repo = Path(__file__).resolve().parent.parent
    s = load_settings(repo / "brainclf.toml.example")
    assert s.roles.groups == {"radiology-research": "researcher"} and s.audit_enabled is True
    example = (repo / ".streamlit" / "secrets.toml.example").read_text()
    assert tomllib.loads(example) == {}  # all commented out: copying it changes nothing until filled in
    uncommented = "\n".join(line.lstrip("# ") for line in example.splitlines() if line.startswith("# ")
                            and ("=" in line or line.startswith("# [auth]")))
    auth = tomllib.loads(uncommented)["auth"]
    assert {"redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url"} <= set(auth)


# ---- issue #25: an unreadable or invalid file is a ConfigError naming the file, never a crash ------------------
@pytest.mark.parametrize("content, message", [
    (b'[audit]\nenabled = "caf\xe9"\n', "not UTF-8 text (byte 22 is 0xe9)"),
    (b"[audit\nenabled = true\n", "not valid TOML"),
    (b'[audit]\nenabled = "false"\n', "enabled must be true or false"),
    (b"[audit]\nenabled = 0\n", "enabled must be true or false"),
    (b"[audit]\nenable = true\n", "unknown [audit] key"),
    (b"audit = [1, 2]\n", "[audit] must be a table"),
    (b"data = [\"x\"]\n", "[data] must be a table"),
    (b"paths = \"models\"\n", "[paths] must be a table"),
    (b"roles = [\"admin\"]\n", "[roles] must be a table"),
    (b"[refer]\ntarget_accuracy = " + b"9" * 400 + b"\n", "refer target must be an accepted accuracy"),
    (b"[refer]\nconfidence = 1" + b"0" * 310 + b"\n", "refer confidence must be a probability"),
    (b'[paths]\nmodels = "a\\u0000b"\n', "[paths] models is not a usable folder path"),
    (b'[paths]\nruns = "~no-such-user-here/x"\n', "[paths] runs is not a usable folder path"),
    (b'[data]\nx = "a\\u0000b"\n', "[data] x is not a usable folder path"),
    (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
])
def test_an_invalid_settings_file_is_a_clear_config_error(tmp_path, content, message):
    path = tmp_path / "secret-folder" / "brainclf.toml"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert message in str(e.value) and "brainclf.toml" in str(e.value)
    assert "secret-folder" not in str(e.value)  # the file's name, never its folder


def test_the_audit_log_is_on_only_for_a_toml_true(tmp_path):
    path = tmp_path / "brainclf.toml"
    for text, on in (("[audit]\nenabled = true\n", True), ("[audit]\nenabled = false\n", False), ("", False)):
        path.write_text(text)
        assert load_settings(path).audit_enabled is on


def test_an_unreadable_settings_file_does_not_name_its_folder(tmp_path):
    path = tmp_path / "secret-folder" / "brainclf.toml"
    path.mkdir(parents=True)  # a folder where the file should be: reading it fails
    with pytest.raises(ConfigError, match="Cannot read the settings file brainclf.toml") as e:
        load_settings(path)
    assert "secret-folder" not in str(e.value)


@pytest.mark.parametrize("content", [b"\xff\xfe[audit]\n", b'[audit]\nenabled = "false"\n', b"[data\n"])
def test_the_app_shows_its_misconfigured_page_for_a_broken_settings_file(tmp_path, monkeypatch, content):
    from streamlit.testing.v1 import AppTest

    path = tmp_path / "brainclf.toml"
    path.write_bytes(content)
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (error,) = [e.value for e in at.error]
    assert error.startswith("This server is misconfigured: ") and "brainclf\\.toml" in error
    assert str(tmp_path) not in error and not at.title  # nothing else of the app runs


def test_a_data_folder_name_with_a_final_newline_is_refused(tmp_path):
    # re.match with "$" accepted "kaggle\n": the names are matched whole now.
    toml = tmp_path / "brainclf.toml"
    toml.write_text(f'[data]\n"kaggle\\n" = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match="data folder name"):
        load_settings(toml)
