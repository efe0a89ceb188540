"""brainclf.cli: the command line, called in-process (TensorFlow is already imported) except one smoke test."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainclf import CLASS_NAMES
from brainclf.cli import main
from brainclf.inference import Predictor
from brainclf.model import read_card

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test may read $BRAINCLF_DATA from the caller or write into the repo's models/ or runs/."""
    monkeypatch.delenv("BRAINCLF_DATA", raising=False)
    monkeypatch.setenv("BRAINCLF_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)


def test_module_help_subprocess():
    r = subprocess.run([sys.executable, "-m", "brainclf", "--help"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    for cmd in ("train", "evaluate", "predict", "dedup"):
        assert cmd in r.stdout


@pytest.mark.parametrize("cmd", ["train", "evaluate", "predict", "dedup"])
def test_subcommand_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m brainclf " + cmd)


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_evaluate_json(smoke_model, synthetic_dataset, capsys):
    rc = main(["evaluate", "--model", str(smoke_model), "--data", str(synthetic_dataset / "Testing"), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 12
    assert 0.0 <= report["accuracy"] <= 1.0
    assert set(report["per_class"]) == set(CLASS_NAMES)
    for c in CLASS_NAMES:
        assert {"precision", "recall", "f1"} <= set(report["per_class"][c])
        assert report["per_class"][c]["support"] == 3
    cm = report["confusion_matrix"]
    assert len(cm) == 4 and all(len(row) == 4 for row in cm) and sum(map(sum, cm)) == 12
    assert report["macro_auc"] is None or 0.0 <= report["macro_auc"] <= 1.0
    assert "macro_auc" in report
    assert "predictions" not in report
    assert report["model"] == {"name": "smoke", "version": read_card(smoke_model).version}


def test_evaluate_json_with_predictions_and_env_data(smoke_model, synthetic_dataset, capsys, monkeypatch):
    monkeypatch.setenv("BRAINCLF_DATA", str(synthetic_dataset))  # Training/Testing root: Testing is evaluated
    assert main(["evaluate", "--model", str(smoke_model), "--json", "--with-predictions"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 12 and len(report["predictions"]) == 12
    assert all(p["path"].startswith("Testing/") for p in report["predictions"])


def test_evaluate_text_report(smoke_model, synthetic_dataset, capsys):
    assert main(["evaluate", "--model", str(smoke_model), "--data", str(synthetic_dataset / "Testing")]) == 0
    out = capsys.readouterr().out
    assert "accuracy=" in out and "confusion matrix (rows true, columns predicted)" in out
    for c in CLASS_NAMES:
        assert c in out


def test_evaluate_folder_without_classes_exits_2(smoke_model, tmp_path, capsys):
    folder = tmp_path / "pictures"
    (folder / "holiday").mkdir(parents=True)
    (folder / "holiday" / "x.png").write_bytes(b"x")
    rc = main(["evaluate", "--model", str(smoke_model), "--data", str(folder)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "class sub-folders" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_evaluate_missing_model_exits_2(tmp_path, synthetic_dataset, capsys):
    rc = main(["evaluate", "--model", str(tmp_path / "none.keras"), "--data", str(synthetic_dataset)])
    assert rc == 2
    assert capsys.readouterr().err.startswith("error: Model file")


def test_predict_good_and_bad_files(smoke_model, tmp_path, make_image, capsys):
    good = tmp_path / "a.png"
    make_image("glioma", seed=5).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_text("definitely not a jpeg")
    out_csv = tmp_path / "out.csv"
    rc = main(["predict", "--model", str(smoke_model), str(good), str(bad), "--csv", str(out_csv)])
    assert rc == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{good}: ")
    assert any(c in lines[0] for c in CLASS_NAMES)
    assert "error: " in captured.err and "bad.jpg" in captured.err
    assert "1 predicted, 1 failed" in captured.err
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2  # predict --folder's columns: the bad file has its row, with the error
    card = read_card(smoke_model)
    assert rows[0]["file"] == str(good) and rows[0]["error"] == "" and rows[0]["tta"] in ("True", "False")
    assert rows[0]["model"] == "smoke" and rows[0]["model_version"] == card.version
    assert rows[0]["prediction"] in CLASS_NAMES
    assert sum(float(rows[0][f"p_{c}"]) for c in CLASS_NAMES) == pytest.approx(1.0, abs=1e-4)
    assert rows[1]["file"] == str(bad) and "bad.jpg" in rows[1]["error"] and rows[1]["prediction"] == ""
    assert rows[1]["model_sha256"] == rows[0]["model_sha256"]
    # An existing CSV (a resumable --folder one, or this) is never replaced: refused before predicting.
    before = out_csv.read_bytes()
    assert main(["predict", "--model", str(smoke_model), str(good), "--csv", str(out_csv)]) == 2
    assert "already exists" in capsys.readouterr().err and out_csv.read_bytes() == before


def test_a_csv_of_files_that_all_fail_is_still_written_whole(smoke_model, tmp_path):
    """No file could be read: the CSV says so, row by row (a stale file from before was kept), and nothing is left
    beside it."""
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a jpeg")
    out_csv = tmp_path / "out.csv"
    assert main(["predict", "--model", str(smoke_model), str(bad), "--csv", str(out_csv)]) == 1
    with open(out_csv, newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["file"] == str(bad) and row["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jpg", "out.csv"]


def test_a_file_name_a_terminal_would_act_on_prints_as_visible_escapes(smoke_model, tmp_path, make_image, capsys):
    """A hospital export's file name holding OSC 52 (set the clipboard), a carriage return and a bidi override went
    to the terminal as it was (security review); the CSV keeps the name itself."""
    name = "scan\x1b]52;c;ZXZpbA==\x07\rglioma 99%\u202egnp.png"
    make_image("glioma", seed=5).save(tmp_path / name, format="PNG")
    bad = tmp_path / "x\x1b[2Jbad.jpg"
    bad.write_text("not a jpeg")
    out_csv = tmp_path / "out.csv"
    main(["predict", "--model", str(smoke_model), str(tmp_path / name), str(bad), "--csv", str(out_csv)])
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert not any(c in text for c in "\x1b\x07\r\u202e")
    assert "scan\\x1b]52;c;ZXZpbA==\\x07\\x0dglioma 99%\\u202egnp.png: " in captured.out
    assert "x\\x1b[2Jbad.jpg" in captured.err
    with open(out_csv, newline="", encoding="utf-8") as fh:
        assert next(csv.DictReader(fh))["file"] == str(tmp_path / name)


def test_predict_all_good_exits_0(smoke_model, tmp_path, make_image, capsys):
    paths = []
    for i, c in enumerate(CLASS_NAMES):
        p = tmp_path / f"{c}.png"
        make_image(c, seed=i).save(p)
        paths.append(str(p))
    assert main(["predict", "--model", str(smoke_model), *paths]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4


def test_train_unknown_architecture_exits_2(synthetic_dataset, tmp_path, capsys):
    rc = main(["train", "--data", str(synthetic_dataset), "--arch", "nope", "--name", "x",
               "--models-dir", str(tmp_path / "models")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown architecture 'nope'") and "compact_cnn" in err
    assert "Traceback" not in err
    assert not (tmp_path / "models").exists() and not (tmp_path / "runs").exists()


def test_train_without_data_exits_2(capsys):
    assert main(["train", "--epochs", "1"]) == 2
    assert "BRAINCLF_DATA" in capsys.readouterr().err


def test_train_smoke_via_cli(synthetic_dataset, tmp_path, capsys):
    models = tmp_path / "models"
    rc = main(["train", "--data", str(synthetic_dataset), "--name", "cli", "--size", "32", "--epochs", "1",
               "--batch-size", "16", "--models-dir", str(models), "--no-augment"])
    assert rc == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == f"saved {models / 'cli.keras'}"
    assert "epoch 1/1 loss" in captured.out + captured.err
    assert "[preparing]" in captured.err
    assert (tmp_path / "runs" / "cli" / "state.json").exists()  # BRAINCLF_RUNS decides where the run lives
    assert read_card(models / "cli.keras").training["config"]["augment"] is False


def test_dedup_json(synthetic_dataset, capsys):
    assert main(["dedup", "--data", str(synthetic_dataset), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 60 and report["splits"] == {"Testing": 12, "Training": 48}
    assert report["leakage"]["Testing"]["with_near_duplicate_in_training"] == 0


def test_dedup_text(synthetic_dataset, capsys):
    assert main(["dedup", "--data", str(synthetic_dataset), "--threshold", "4"]) == 0
    out = capsys.readouterr().out
    assert "60 files" in out and "Hamming <= 4/256" in out


def test_evaluate_tta_follows_the_card_unless_overridden(smoke_model, synthetic_dataset, capsys):
    default = read_card(smoke_model).tta_default
    testing = str(synthetic_dataset / "Testing")
    for flags, expected in (([], default), (["--tta"], True), (["--no-tta"], False)):
        assert main(["evaluate", "--model", str(smoke_model), "--data", testing, "--json", *flags]) == 0
        assert json.loads(capsys.readouterr().out)["tta"] is expected, flags


def test_the_cli_shows_the_librarys_log_lines_on_stderr(capsys):
    """The library logs instead of printing; the CLI shows brainclf's INFO lines as plain lines on stderr,
    once each however often main() has run in this process."""
    import logging

    from brainclf.cli import configure_logging

    configure_logging()
    configure_logging()
    logging.getLogger("brainclf.data.datasets").info("decoded 3 of 3 images")
    logging.getLogger("brainclf.data.datasets").debug("not shown")
    err = capsys.readouterr().err
    assert err.count("decoded 3 of 3 images\n") == 1
    assert "not shown" not in err


def test_predict_prints_the_ood_flag_and_the_refer_verdict(smoke_model, tmp_path, make_image, capsys, monkeypatch):
    """Issue #25: on random noise the CLI printed "notumor (99.7 %)" and nothing else, where the app flags it."""
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), np.uint8)).save(noise)
    assert main(["predict", "--model", str(smoke_model), str(noise)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{noise}: ") and "OUT OF DISTRIBUTION: not like a brain MRI slice (the image is in " \
        "colour" in line
    # A flagged slice is no answer whatever its confidence: the line says so, as its CSV row's refer does.
    assert "REFER to a radiologist: a flagged slice is not answered." in line and "not referred" not in line

    # A referred case: every class needs more confidence than any answer has (the rule the page applies).
    monkeypatch.setattr(Predictor, "refer_thresholds", property(lambda self: {c: 1.0 for c in CLASS_NAMES}))
    slice_ = tmp_path / "slice.png"
    make_image("glioma", seed=5).save(slice_)
    out_csv = tmp_path / "out.csv"
    assert main(["predict", "--model", str(smoke_model), str(slice_), "--csv", str(out_csv)]) == 0
    line = capsys.readouterr().out.strip()
    assert "REFER to a radiologist: confidence" in line and "below 100" in line and "OUT OF" not in line
    with open(out_csv, newline="") as fh:
        assert next(csv.DictReader(fh))["refer"] == "True"


def test_file_errors_are_one_line_not_a_traceback(smoke_model, tmp_path, make_image, capsys):
    make_image().save(tmp_path / "a.png")
    (tmp_path / "outdir").mkdir()
    image, folder = str(tmp_path / "a.png"), str(tmp_path / "outdir")
    assert main(["predict", "--model", str(smoke_model), image, "--csv", folder]) == 2
    assert "is a folder: give a file name (nothing was done yet)" in capsys.readouterr().err
    (tmp_path / "u16.csv").write_bytes("file,prediction\n".encode("utf-16"))
    assert main(["merge-csv", str(tmp_path / "out.csv"), str(tmp_path / "u16.csv")]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
    assert main(["merge-csv", str(tmp_path / "outdir"), str(tmp_path / "u16.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_an_excel_manifest_with_a_byte_order_mark_and_a_blank_row_is_read(tmp_path):
    from brainclf.evaluation.external import read_manifest

    (tmp_path / "manifest.csv").write_text("\ufefffile,class,sequence\nglioma/a.jpg,glioma,T2\n,,\n", encoding="utf-8")
    assert read_manifest(tmp_path) == {"glioma/a.jpg": {"sequence": "T2", "subtype": ""}}


def test_bench_refuses_zero_runs_with_a_message(capsys):
    assert main(["bench", "--runs", "0", "--no-app"]) == 2
    assert "--runs must be between 1 and 10000, got 0" in capsys.readouterr().err


def test_predict_without_files_says_so_before_loading_the_model(tmp_path, capsys):
    """The model is not even looked for: a missing one would otherwise be the error (it loaded for ~5 s first)."""
    assert main(["predict", "--model", str(tmp_path / "absent.keras")]) == 2
    assert "Give image files, or --folder DIR with --csv OUT." in capsys.readouterr().err
