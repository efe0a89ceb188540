"""brainclf.input.limits: the one model-name rule (training and upload) and the app's upload limits."""

from __future__ import annotations

import pytest

from brainclf.errors import ConfigError, ImageError, ModelError
from brainclf.input import check_upload_batch, limits, validate_model_name

BAD_NAMES = {
    "dеfault": "non-ASCII character 'е' \\(U\\+0435\\)",  # Cyrillic е: looks like 'default'
    "modèle": "non-ASCII character 'è'",
    "x" * 65: "has 65 characters",
    "x" * 245: "has 245 characters",
    "y" * 300: "has 300 characters",
    "": "is empty",
    "../evil": "character '\\.'",
    "a/b": "character '/'",
    "a\\b": "character '\\\\\\\\'",
    "with space": "character ' '",
    "name\n": "character '\\\\n'",
    "v1.2": "character '\\.'",
}


@pytest.mark.parametrize("name", list(BAD_NAMES))
def test_bad_names_are_refused_saying_why(name):
    with pytest.raises(ConfigError, match=BAD_NAMES[name]) as e:
        validate_model_name(name)
    assert "1-64 ASCII letters, digits, '-' or '_'" in str(e.value)
    assert len(str(e.value)) < 250  # a 300-character name is not echoed whole


@pytest.mark.parametrize("name", ["default", "a", "x" * 64, "seed_2-B", "20261127"])
def test_good_names_pass(name):
    assert validate_model_name(name) == name


def test_error_type_can_be_chosen():
    with pytest.raises(ModelError):
        validate_model_name("dеfault", ModelError)


def test_training_refuses_a_bad_name_before_any_work(tmp_path, monkeypatch):
    from brainclf.training import TrainConfig, TrainRequest, train

    monkeypatch.setenv("BRAINCLF_RUNS", str(tmp_path / "runs"))
    # The data folder does not exist: a name checked late would fail on the data (or train, then fail at saving).
    for name in ("dеfault", "x" * 65, "../evil"):
        with pytest.raises(ConfigError, match="1-64 ASCII letters"):
            train(TrainRequest(TrainConfig(architecture="compact_cnn", image_size=32, epochs=1),
                               data=tmp_path / "missing", name=name, models_dir=tmp_path / "models"))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "models").exists()


def test_model_upload_uses_the_same_rule(tmp_path):
    from brainclf.model import add_model

    for name in ("dеfault", "x" * 65, "../evil", ""):
        with pytest.raises(ModelError, match="1-64 ASCII letters"):
            add_model(name, b"", b"", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_upload_batch_within_limits_returns_the_session_total():
    assert check_upload_batch([], 0) == 0
    assert check_upload_batch([1000, 2000], 500) == 3500
    assert check_upload_batch([limits.MAX_UPLOAD_FILE_BYTES]) == limits.MAX_UPLOAD_FILE_BYTES
    assert check_upload_batch([1] * limits.MAX_UPLOAD_FILES) == limits.MAX_UPLOAD_FILES


def test_too_many_files_in_one_upload():
    with pytest.raises(ImageError, match=f"21 files in one upload; at most {limits.MAX_UPLOAD_FILES}"):
        check_upload_batch([1000] * (limits.MAX_UPLOAD_FILES + 1), 0)


def test_file_over_the_per_file_limit():
    with pytest.raises(ImageError, match="File 2 is 50.0 MB, above the limit of 50 MB a file"):
        check_upload_batch([10, limits.MAX_UPLOAD_FILE_BYTES + 1], 0)


def test_session_byte_budget():
    used = limits.MAX_SESSION_UPLOAD_BYTES - 1000
    assert check_upload_batch([1000], used) == limits.MAX_SESSION_UPLOAD_BYTES  # exactly at the limit: fine
    with pytest.raises(ImageError, match="would take this session to 200 MB, above the limit of 200 MB a session"):
        check_upload_batch([1001], used)
    with pytest.raises(ConfigError, match="negative size"):
        check_upload_batch([-1], 0)


def test_limits_module_imports_nothing_heavy():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(limits.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "errors"}, imported


def test_streamlit_upload_size_matches_the_limit():
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * limits.MiB == limits.MAX_UPLOAD_FILE_BYTES
    assert config["client"]["showErrorDetails"] == "none"
