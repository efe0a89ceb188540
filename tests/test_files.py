"""brainclf.files: a target is replaced whole or not at all, and a failed write leaves no temporary file."""

import json

import pytest

from brainclf.files import write_csv_atomically, write_json_atomically


def _rows_then_failure():
    yield {"file": "a.png", "p": 0.5}
    raise RuntimeError("the disk filled up")


def test_a_csv_that_fails_half_way_leaves_the_old_file_and_no_debris(tmp_path):
    out = tmp_path / "predictions.csv"
    out.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk filled"):
        write_csv_atomically(out, ["file", "p"], _rows_then_failure())
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


def test_a_json_that_cannot_be_written_leaves_the_old_file_and_no_debris(tmp_path):
    out = tmp_path / "card.json"
    write_json_atomically(out, {"name": "first"})
    with pytest.raises(TypeError):
        write_json_atomically(out, {"name": object()})
    assert json.loads(out.read_text()) == {"name": "first"}
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_a_csv_quotes_text_and_defuses_formulas(tmp_path):
    out = tmp_path / "rows.csv"
    write_csv_atomically(out, ["file", "p"], [{"file": "=cmd()", "p": 0.25}])
    assert out.read_text().splitlines() == ['"file","p"', "\"'=cmd()\",0.25"]
