"""A CSV with a cell over the csv module's 128 KiB limit (merge-csv's input, or the CSV a predict --folder resumes) is
refused with one line naming it, not a _csv.Error traceback."""

from __future__ import annotations

from brainclf.cli import main
from brainclf.inference.batch_predict import CSV_FIELDS


def _csv_with_a_huge_cell(path):
    row = ["a.png", "glioma", "0.9", *["0.1"] * 4, "False", "False", "m", "1", "abc", "False", "x" * 200_000]
    assert len(row) == len(CSV_FIELDS)
    path.write_text(",".join(CSV_FIELDS) + "\n" + ",".join(row) + "\n")
    return path


def test_merge_csv_refuses_a_shard_with_an_overlong_cell_naming_it(tmp_path, capsys):
    shard = _csv_with_a_huge_cell(tmp_path / "shard0.csv")
    assert main(["merge-csv", str(tmp_path / "merged.csv"), str(shard)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{shard} line" in err and "field larger than field limit" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "merged.csv").exists()


def test_predict_folder_refuses_to_resume_a_csv_with_an_overlong_cell(smoke_model, tmp_path, make_image, capsys):
    (tmp_path / "pf").mkdir()
    make_image().save(tmp_path / "pf" / "b.png")
    out = _csv_with_a_huge_cell(tmp_path / "out.csv")
    before = out.read_bytes()
    rc = main(["predict", "--model", str(smoke_model), "--folder", str(tmp_path / "pf"), "--csv", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f"error: {out} line" in err and "field larger than field limit" in err
    assert out.read_bytes() == before
