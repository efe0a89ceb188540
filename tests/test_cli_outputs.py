"""Files the commands write: an existing one is not replaced unasked (merge-csv OUT, shortcut --out, site report
--pdf, bench --json-out refuse it, --overwrite replaces it), a folder that cannot be written is refused before the
work, and a write that fails late names the output, not the hidden temporary file beside it."""

from __future__ import annotations

import csv
import os

import pytest

from brainclf.cli import main
from brainclf.inference.batch_predict import CSV_FIELDS


def _shard(path, name="a.png"):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerow({"file": name, "prediction": "glioma", "confidence": "0.9", "model": "m", "model_version": "1",
                    **{k: "" for k in CSV_FIELDS if k not in ("file", "prediction", "confidence", "model",
                                                                "model_version")}})
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


def test_merge_csv_refuses_an_existing_out_and_replaces_it_with_overwrite(tmp_path, capsys):
    shard, out = _shard(tmp_path / "s0.csv"), tmp_path / "merged.csv"
    out.write_text("an earlier merge\n")
    assert main(["merge-csv", str(out), str(shard)]) == 2
    assert "already exists" in _error_line(capsys) and out.read_text() == "an earlier merge\n"
    assert main(["merge-csv", str(out), str(shard), "--overwrite"]) == 0
    assert "a.png" in out.read_text()


@pytest.mark.parametrize("argv, flag", [
    (["shortcut", "--data", "{tmp}/nowhere", "--out", "{file}"], "--out"),
    (["bench", "--model", "{tmp}/none.keras", "--data", "{tmp}/nowhere", "--no-app", "--json-out", "{file}"],
     "--json-out"),
    (["site", "report", "--model", "{tmp}/none.keras", "--site-data", "{tmp}/nowhere", "--site", "a",
      "--run-dir", "{tmp}/run", "--pdf", "{file}"], "--pdf")])
def test_an_existing_output_file_is_refused_before_any_work(tmp_path, capsys, argv, flag):
    file = tmp_path / "result"
    file.write_text("kept")
    assert main([a.format(tmp=tmp_path, file=file) for a in argv]) == 2
    err = _error_line(capsys)
    assert f"{flag} {file} already exists" in err and "--overwrite" in err
    assert file.read_text() == "kept" and not (tmp_path / "run").exists()


def test_overwrite_lets_the_check_pass(tmp_path, capsys):
    file = tmp_path / "result"
    file.write_text("kept")
    main(["shortcut", "--data", str(tmp_path / "nowhere"), "--out", str(file), "--overwrite"])
    assert "does not exist" in _error_line(capsys)  # past the output check, to the data


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """tmp_path/ro, which os.access says cannot be written (chmod does not stop root, who runs the tests in CI)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == str(ro) else real(p, mode, **kw))
    return ro


def test_predict_csv_into_a_read_only_folder_is_refused_before_the_model_loads(tmp_path, capsys, read_only):
    rc = main(["predict", "--model", str(tmp_path / "none.keras"), str(tmp_path / "x.png"), "--csv",
               str(read_only / "out.csv")])
    assert rc == 2 and f"the folder {read_only} is not writable" in _error_line(capsys)


def test_merge_csv_into_a_read_only_folder_is_refused_before_reading(tmp_path, capsys, read_only):
    assert main(["merge-csv", str(read_only / "out.csv"), str(tmp_path / "absent.csv")]) == 2
    assert f"the folder {read_only} is not writable" in _error_line(capsys)


def _fails_late(*args, **kwargs):
    raise PermissionError(13, "Permission denied", "ro/.out.5037-1234.tmp")


def test_a_late_write_failure_names_the_output_not_the_temporary_file(tmp_path, capsys, monkeypatch, smoke_model,
                                                                      make_image):
    import brainclf.cli.prediction as prediction
    import brainclf.data.shard as shard

    monkeypatch.setattr(shard, "write_csv_atomically", _fails_late)
    out = tmp_path / "merged.csv"
    assert main(["merge-csv", str(out), str(_shard(tmp_path / "s0.csv"))]) == 2
    err = _error_line(capsys)
    assert f"error: {out}: cannot write" in err and ".tmp" not in err
    monkeypatch.setattr(prediction, "write_csv_atomically", _fails_late)
    make_image().save(tmp_path / "a.png")
    rc = main(["predict", "--model", str(smoke_model), str(tmp_path / "a.png"), "--csv", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and f"error: {tmp_path / 'p.csv'}: cannot write it (Permission denied)" in err and ".tmp" not in err


def test_a_site_name_leading_out_of_the_runs_folder_is_refused_before_any_folder_is_made(tmp_path, capsys,
                                                                                          monkeypatch):
    runs = tmp_path / "a" / "b"
    runs.mkdir(parents=True)
    monkeypatch.setenv("BRAINCLF_RUNS", str(runs))
    before = sorted(tmp_path.rglob("*"))
    rc = main(["site", "validate", "--model", str(tmp_path / "m.keras"), "--site-data", str(tmp_path),
               "--site", "../../../pwned"])
    assert rc == 2 and "A site name is 1-48 ASCII letters" in _error_line(capsys)
    assert sorted(tmp_path.rglob("*")) == before
