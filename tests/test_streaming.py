"""Streaming folder prediction: 10,000+ files, bounded memory (chunks), bad files recorded, resumable."""

from __future__ import annotations

import csv
import re
import types
from pathlib import Path

import numpy as np
import pytest

from brainclf.cli import main
from brainclf.data import iter_image_files
from brainclf.inference import CSV_FIELDS, predict_folder

N_GOOD, N_BROKEN, N_DROPPED = 10_000, 2, 1_000
BROKEN = ("broken_empty.png", "broken_truncated.png")


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory) -> Path:
    """N_GOOD copies of one 64x64 PNG in nested folders a00/b0..b9/ (100 per leaf), two broken files at the
    top (so they are listed first), and files that are not images."""
    # Module scope: the function-scoped make_image / png_bytes fixtures cannot be used; same helpers.
    from conftest import encode, synthetic_image

    data = encode(synthetic_image("glioma", np.random.default_rng(0)))
    root = tmp_path_factory.mktemp("stream") / "scans"
    k = 0
    for a in range(10):
        for b in range(10):
            leaf = root / f"a{a:02d}" / f"b{b}"
            leaf.mkdir(parents=True)
            for i in range(N_GOOD // 100):
                (leaf / f"img{i:03d}.png").write_bytes(data)
                k += 1
    (root / BROKEN[0]).write_bytes(b"")
    (root / BROKEN[1]).write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not an image")
    (root / "a00" / "thumbs.db").write_bytes(b"\0" * 10)
    assert k == N_GOOD
    return root


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_iter_image_files_is_lazy_sorted_and_filtered(big_folder):
    it = iter_image_files(big_folder)
    assert isinstance(it, types.GeneratorType)
    first = [next(it) for _ in range(4)]
    # Files of a folder come before its sub-folders, each folder sorted by name.
    assert [p.name for p in first[:2]] == list(BROKEN)
    assert first[2] == big_folder / "a00" / "b0" / "img000.png"
    assert first[3] == big_folder / "a00" / "b0" / "img001.png"
    rest = list(it)
    files = first + rest
    assert len(files) == N_GOOD + N_BROKEN
    assert len(set(files)) == len(files)
    assert all(p.suffix == ".png" for p in files)
    assert files[-1] == big_folder / "a09" / "b9" / f"img{N_GOOD // 100 - 1:03d}.png"


def test_predict_folder_streams_and_resumes(smoke_predictor, smoke_model, big_folder, tmp_path, capsys,
                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "predictions.csv"
    progress_calls = []
    counts = predict_folder(smoke_predictor, big_folder, out, chunk=512,
                            progress=lambda c: progress_calls.append(dict(c)))
    assert counts == {"predicted": N_GOOD, "failed": N_BROKEN, "skipped": 0, "failed_before": 0}
    # Chunked: progress is reported once per chunk, with growing counts.
    assert len(progress_calls) >= N_GOOD // 512
    done = [c["predicted"] + c["failed"] for c in progress_calls]
    assert done == sorted(done) and done[-1] == N_GOOD + N_BROKEN
    rows = read_rows(out)
    assert len(rows) == N_GOOD + N_BROKEN
    assert list(rows[0]) == CSV_FIELDS
    files = [r["file"] for r in rows]
    assert len(set(files)) == len(files)
    assert {p.relative_to(big_folder).as_posix() for p in iter_image_files(big_folder)} == set(files)
    by_file = {r["file"]: r for r in rows}
    for name in BROKEN:
        assert by_file[name]["error"], name
        assert by_file[name]["prediction"] == ""
    assert "empty" in by_file[BROKEN[0]]["error"]
    good = [r for r in rows if r["file"] not in BROKEN]
    assert all(r["error"] == "" and r["prediction"] for r in good)
    assert len({r["confidence"] for r in good}) == 1  # the same bytes give the same prediction everywhere

    # Interrupted run: drop the last N_DROPPED rows (keep the header) and run the CLI again.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-N_DROPPED]))
    assert len(read_rows(out)) == N_GOOD + N_BROKEN - N_DROPPED
    capsys.readouterr()
    rc = main(["predict", "--model", str(smoke_model), "--folder", str(big_folder), "--csv", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err  # this run's own work succeeded (a job array's retry must be able to end)
    summary = err.strip().splitlines()[-1]
    assert f"{N_DROPPED} predicted, 0 failed, {N_GOOD + N_BROKEN - N_DROPPED} already in" in summary
    assert f"({N_BROKEN} of them failed then)" in summary
    m = re.search(r"peak memory (\d+) MB", summary)
    assert m, summary
    assert 0 < int(m.group(1)) < 64_000
    rows = read_rows(out)
    assert len(rows) == N_GOOD + N_BROKEN
    files = [r["file"] for r in rows]
    assert len(set(files)) == len(files)
    redone, dropped = rows[-N_DROPPED:], good[-N_DROPPED:]
    assert [r["file"] for r in redone] == [r["file"] for r in dropped]  # the same files, in the same order
    for r, r0 in zip(redone, dropped):
        assert r["prediction"] == r0["prediction"] and r["error"] == ""
        assert float(r["confidence"]) == pytest.approx(float(r0["confidence"]), abs=1e-5)

    # A complete CSV: nothing left to do.
    counts = predict_folder(smoke_predictor, big_folder, out)
    assert counts == {"predicted": 0, "failed": 0, "skipped": N_GOOD + N_BROKEN, "failed_before": N_BROKEN}
    assert len(read_rows(out)) == N_GOOD + N_BROKEN


def test_cli_folder_needs_csv(smoke_model, big_folder, capsys):
    assert main(["predict", "--model", str(smoke_model), "--folder", str(big_folder)]) == 2
    assert "--csv" in capsys.readouterr().err


def test_malformed_dicom_gets_error_row_instead_of_aborting(smoke_predictor, tmp_path, png_bytes, make_image):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a_bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00\xb3")
    (folder / "b_good.png").write_bytes(png_bytes(make_image()))
    out = tmp_path / "mixed.csv"
    counts = predict_folder(smoke_predictor, folder, out)
    assert counts == {"predicted": 1, "failed": 1, "skipped": 0, "failed_before": 0}
    assert read_rows(out)[0]["error"]


def test_resume_after_kill_mid_row(smoke_predictor, tmp_path, png_bytes, make_image):
    folder = tmp_path / "few"
    (folder / "a").mkdir(parents=True)
    for i in range(6):
        (folder / "a" / f"img{i:02d}.png").write_bytes(png_bytes(make_image(seed=i)))
    out = tmp_path / "few.csv"
    predict_folder(smoke_predictor, folder, out)
    text = out.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    out.write_text(text[:-(len(last) - 4)])  # killed after writing 'a/im' of the last row
    predict_folder(smoke_predictor, folder, out)
    rows = read_rows(out)
    expected = {f"a/img{i:02d}.png" for i in range(6)}
    assert {r["file"] for r in rows} == expected
    assert len(rows) == 6


@pytest.mark.parametrize("content", [b"my notes\nline two without a newline", b'{"a": 1}', b"file,prediction\n"])
def test_a_file_that_is_not_one_of_its_csvs_is_refused_untouched(smoke_predictor, tmp_path, png_bytes, make_image,
                                                                 content):
    """--csv naming another file by mistake: refused before a byte of it changes (the half-row trim used to cut
    its last line, or all of it, first)."""
    from brainclf.errors import ConfigError

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(make_image()))
    other = tmp_path / "notes.txt"
    other.write_bytes(content)
    with pytest.raises(ConfigError, match="nothing in it was changed"):
        predict_folder(smoke_predictor, folder, other)
    assert other.read_bytes() == content


def test_resuming_says_the_earlier_failures(smoke_model, tmp_path, png_bytes, make_image, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(make_image()))
    (folder / "b.png").write_bytes(b"not an image")
    out = tmp_path / "out.csv"
    args = ["predict", "--model", str(smoke_model), "--folder", str(folder), "--csv", str(out)]
    assert main(args) == 1
    capsys.readouterr()
    assert main(args) == 0  # nothing new failed (docs/scale.md: a retry ends), but the summary says what did
    err = capsys.readouterr().err
    assert "0 predicted, 0 failed, 2 already in" in err and "(1 of them failed then)" in err


def test_a_row_cut_short_inside_the_csv_is_refused_with_a_message(smoke_predictor, tmp_path, png_bytes, make_image):
    from brainclf.errors import ConfigError

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.png").write_bytes(png_bytes(make_image(seed=i)))
    out = tmp_path / "out.csv"
    predict_folder(smoke_predictor, folder, out)
    header, first, second = out.read_text().splitlines()
    out.write_text(f"{header}\n{first.split(',')[0]},notumor\n{second}\n")  # a row cut by hand
    with pytest.raises(ConfigError, match="row 2 does not have this version's"):
        predict_folder(smoke_predictor, folder, out)


def test_a_file_name_that_is_not_utf8_is_written_and_resumed(smoke_predictor, tmp_path, png_bytes, make_image):
    folder = tmp_path / "in"
    folder.mkdir()
    odd = "bad\udcff.png"  # the file system's byte 0xff, as Python names it
    Path(folder, odd).write_bytes(png_bytes(make_image()))
    out = tmp_path / "out.csv"
    assert predict_folder(smoke_predictor, folder, out)["predicted"] == 1
    assert b"bad\xff.png" in out.read_bytes()  # the same bytes as the name on disk
    assert predict_folder(smoke_predictor, folder, out)["skipped"] == 1


def test_text_cells_are_quoted_so_a_semicolon_spreadsheet_cannot_split_out_a_formula(smoke_predictor, tmp_path,
                                                                                     png_bytes, make_image):
    folder = tmp_path / "in"
    folder.mkdir()
    name = "scan;=cmd|' -C calc'!A0.png"
    (folder / name).write_bytes(png_bytes(make_image()))
    out = tmp_path / "out.csv"
    predict_folder(smoke_predictor, folder, out)
    row = out.read_text().splitlines()[1]
    assert row.startswith(f'"{name}",')  # one quoted cell: split on ';' it stays inside the quotes
    assert read_rows(out)[0]["file"] == name


def test_a_link_back_to_a_parent_folder_is_not_followed(tmp_path, png_bytes, make_image):
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x.png").write_bytes(png_bytes(make_image()))
    (folder / "a" / "loop").symlink_to(folder, target_is_directory=True)  # would list x.png forever (ELOOP)
    assert [p.relative_to(folder).as_posix() for p in iter_image_files(folder)] == ["a/x.png"]



def test_a_csv_with_carriage_return_line_ends_is_refused_untouched(smoke_predictor, tmp_path, png_bytes, make_image):
    """Old Mac 'CSV (Macintosh)' ends lines with CR only: its header read fine, then the half-row trim (which looks
    for a line feed) cut the whole file away."""
    from brainclf.errors import ConfigError

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(make_image()))
    out = tmp_path / "mac.csv"
    content = (",".join(CSV_FIELDS) + "\r" + "a.png" + "," * (len(CSV_FIELDS) - 1) + "\r").encode()
    out.write_bytes(content)
    with pytest.raises(ConfigError, match="nothing in it was changed"):
        predict_folder(smoke_predictor, folder, out)
    assert out.read_bytes() == content


def test_the_csv_refers_and_flags_each_slice_as_the_predict_page_does(smoke_predictor, tmp_path, png_bytes,
                                                                       make_image):
    """A card without a fitted refer rule or OOD guard (an upload may have neither): the page refers below the 90 %
    fallback bar, where the CSV answered every slice; a colour picture is flagged on the page, where the CSV gave
    it a class."""
    from dataclasses import replace

    from PIL import Image

    from brainclf.inference import Predictor

    cal = {k: v for k, v in smoke_predictor.card.calibration.items() if not k.startswith("refer_threshold")}
    bare = Predictor(smoke_predictor.model, replace(smoke_predictor.card, calibration=cal, ood={}))  # colour alone
    folder = tmp_path / "mixed"
    folder.mkdir()
    for seed in range(3):
        (folder / f"grey-{seed}.png").write_bytes(png_bytes(make_image(seed=seed)))
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::8] = (255, 0, 0)
    stripes[:, 4::8] = (0, 200, 0)
    Image.fromarray(stripes).save(folder / "photo.png")
    predict_folder(bare, folder, tmp_path / "out.csv")
    rows = {r["file"]: r for r in read_rows(tmp_path / "out.csv")}
    assert set(rows) == {"grey-0.png", "grey-1.png", "grey-2.png", "photo.png"}
    for name, row in rows.items():
        page = bare.predict(folder / name, name=name)
        # A flagged slice's row says refer too (it is no answer), as its audit line does.
        assert (row["refer"], row["out_of_distribution"]) == (str(page.referred or page.out_of_distribution),
                                                              str(page.out_of_distribution)), name
    assert rows["photo.png"]["out_of_distribution"] == "True"
    grey = bare.predict(folder / "grey-0.png")
    assert grey.refer_threshold == 0.90 and rows["grey-0.png"]["refer"] == str(grey.confidence < 0.90)
