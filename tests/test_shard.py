"""brainclf.data.shard and the CLI around it: predict --folder --shard I/N on N machines, merge-csv.

Uses the bundled seed model (no training) on a folder of synthetic images in nested sub-folders."""

from __future__ import annotations

import ast
import csv
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, synthetic_image

from brainclf.cli import main
from brainclf.data import in_shard, iter_shard_files, merge_csvs, parse_shard, shard_of
from brainclf.errors import ConfigError, DataError
from brainclf.inference import CSV_FIELDS, Predictor, predict_folder

MODEL = Path(__file__).resolve().parents[1] / "models" / "seed.keras"
N_SHARDS = 3
NUMERIC = ["confidence", *(f"p_{c}" for c in CLASSES)]


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """30 synthetic slices in nested folders, one unreadable file, and a text file that is not an image."""
    root = tmp_path_factory.mktemp("archive") / "scans"
    rng = np.random.default_rng(7)
    for i in range(30):
        cls = CLASSES[i % 4]
        folder = root / f"site{i % 2}" / ("old" if i % 3 == 0 else "new")
        folder.mkdir(parents=True, exist_ok=True)
        synthetic_image(cls, rng).save(folder / f"scan_{i:03d}.png")
    (root / "site0" / "broken.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("not an image, never listed")
    return root


@pytest.fixture(scope="module")
def runs(archive, tmp_path_factory) -> dict:
    """The unsharded CSV and the three shard CSVs, all written through the CLI."""
    out = tmp_path_factory.mktemp("csv")
    codes = {"all": main(["predict", "--model", str(MODEL), "--folder", str(archive), "--csv", str(out / "all.csv")])}
    for i in range(N_SHARDS):
        codes[i] = main(["predict", "--model", str(MODEL), "--folder", str(archive), "--csv",
                         str(out / f"shard{i}.csv"), "--shard", f"{i}/{N_SHARDS}"])
    return {"dir": out, "codes": codes, "all": out / "all.csv",
            "shards": [out / f"shard{i}.csv" for i in range(N_SHARDS)]}


def all_files(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in iter_shard_files(folder, None)]


# --- parse_shard, shard_of ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec,expected", [("0/1", (0, 1)), ("2/3", (2, 3)), (" 1 / 4 ", (1, 4)), ("9/10", (9, 10))])
def test_parse_shard_valid(spec, expected):
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("3/3", "between 0 and 2"), ("-1/3", "between 0 and 2"), ("0/0", "at least 1"), ("1/-2", "at least 1"),
    ("1", "I/N"), ("a/b", "I/N"), ("1/2/3", "I/N"), ("", "I/N"), ("1.0/2", "I/N"),
])
def test_parse_shard_invalid(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_shard(spec)


def test_shard_of_is_pinned_and_partitions():
    # Pinned values: changing the hash would silently re-assign files of half-finished sharded runs.
    assert [shard_of("glioma/Te-gl_0010.jpg", n) for n in (1, 2, 3, 5, 7, 10)] == [0, 0, 0, 3, 2, 8]
    assert [shard_of("meningioma/Te-me_0001.jpg", n) for n in (1, 2, 3, 5, 7, 10)] == [0, 0, 1, 4, 4, 4]
    names = [f"class{k}/img_{i:04d}.png" for k in range(4) for i in range(300)]
    # The machines of a sharded run are separate processes: each with its own hash() salt must agree.
    code = ("import sys; from brainclf.data import shard_of; "
            "print([shard_of(line.strip(), 7) for line in sys.stdin])")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], input="\n".join(names[:200]), capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parent.parent,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert ast.literal_eval(out) == [shard_of(name, 7) for name in names[:200]], seed
    for n in (1, 2, 3, 8):
        counts = np.bincount([shard_of(name, n) for name in names], minlength=n)
        assert counts.sum() == len(names) and len(counts) == n
        assert counts.min() > len(names) / n * 0.8  # roughly even
        for name in names[:50]:
            assert sum(in_shard(name, (i, n)) for i in range(n)) == 1


def test_iter_shard_files_partition_the_folder(archive):
    everything = all_files(archive)
    assert "notes.txt" not in everything and "site0/broken.png" in everything and len(everything) == 31
    parts = [[p.relative_to(archive).as_posix() for p in iter_shard_files(archive, (i, N_SHARDS))]
             for i in range(N_SHARDS)]
    assert all(parts)  # every shard has work
    assert sorted(sum(parts, [])) == sorted(everything)


# --- predict --folder --shard ------------------------------------------------------------------------

def test_three_shards_cover_the_folder_once_and_match_the_unsharded_run(archive, runs):
    # The broken file makes its run (unsharded, and the one shard holding it) exit 1; the others 0.
    broken_shard = shard_of("site0/broken.png", N_SHARDS)
    assert runs["codes"]["all"] == 1
    assert [runs["codes"][i] for i in range(N_SHARDS)] == [int(i == broken_shard) for i in range(N_SHARDS)]
    unsharded = {r["file"]: r for r in read_rows(runs["all"])}
    assert sorted(unsharded) == sorted(all_files(archive))
    seen: list[str] = []
    for i, path in enumerate(runs["shards"]):
        rows = read_rows(path)
        assert rows, f"shard {i} is empty"
        assert all(shard_of(r["file"], N_SHARDS) == i for r in rows)
        seen += [r["file"] for r in rows]
    assert len(seen) == len(set(seen))  # no file in two shards
    assert sorted(seen) == sorted(unsharded)  # and together every file
    for path in runs["shards"]:
        for r in read_rows(path):
            u = unsharded[r["file"]]
            assert r["prediction"] == u["prediction"] and r["error"] == u["error"]
            assert r["model"] == u["model"] == "seed"
            if not r["error"]:
                for k in NUMERIC:
                    assert float(r[k]) == pytest.approx(float(u[k]), abs=1e-5)
    assert unsharded["site0/broken.png"]["error"]


def test_shard_run_resumes(archive, runs, tmp_path):
    """Kill a shard mid-write (half a row at the end), re-run: the same rows, the done ones skipped."""
    reference = read_rows(runs["shards"][1])
    assert len(reference) >= 3
    target = tmp_path / "shard1.csv"
    lines = runs["shards"][1].read_text().splitlines(keepends=True)
    target.write_text("".join(lines[:3]) + lines[3][:10])  # header, 2 rows, half a row
    predictor = Predictor.load(MODEL)
    counts = predict_folder(predictor, archive, target, shard=(1, N_SHARDS))
    assert counts["skipped"] == 2
    assert counts["predicted"] + counts["failed"] == len(reference) - 2
    assert sorted(r["file"] for r in read_rows(target)) == sorted(r["file"] for r in reference)
    again = predict_folder(predictor, archive, target, shard=(1, N_SHARDS))
    assert again == {"predicted": 0, "failed": 0, "skipped": len(reference),
                     "failed_before": sum(bool(r["error"]) for r in reference)}


def test_csv_of_another_shard_is_refused(archive, runs, tmp_path):
    target = tmp_path / "mixed.csv"
    shutil.copy(runs["shards"][0], target)
    before = target.read_bytes()
    rc = main(["predict", "--model", str(MODEL), "--folder", str(archive), "--csv", str(target), "--shard", "2/3"])
    assert rc == 2
    assert target.read_bytes() == before  # nothing appended


@pytest.mark.parametrize("shard,message", [("3/3", "between 0 and 2"), ("0/0", "at least 1"), ("x", "I/N")])
def test_invalid_shard_on_the_command_line(archive, tmp_path, capsys, shard, message):
    out = tmp_path / "out.csv"
    rc = main(["predict", "--model", str(MODEL), "--folder", str(archive), "--csv", str(out), "--shard", shard])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --shard") and message in err[-1]
    assert not out.exists()


def test_shard_without_folder_is_refused(archive, capsys):
    rc = main(["predict", "--model", str(MODEL), str(next(iter_shard_files(archive, None))), "--shard", "0/2"])
    assert rc == 2
    assert "--shard splits a --folder" in capsys.readouterr().err


# --- merge-csv ---------------------------------------------------------------------------------------

def test_merge_csv_joins_shards_into_the_unsharded_result(archive, runs, tmp_path, capsys):
    out = tmp_path / "merged.csv"
    rc = main(["merge-csv", str(out), *map(str, runs["shards"]), "--folder", str(archive)])
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("ok: merged 31 files (1 with errors) from 3 CSVs")
    assert "0 duplicate, 0 missing" in summary
    text = out.read_text()
    assert text.count('"file","prediction"') == 1  # header once (text cells quoted)
    assert not any(line.split(",")[2].startswith('"0.') for line in text.splitlines()[1:])  # numbers stay bare
    merged = read_rows(out)
    assert list(merged[0]) == CSV_FIELDS
    assert [r["file"] for r in merged] == sorted(all_files(archive))
    unsharded = {r["file"]: r for r in read_rows(runs["all"])}
    for r in merged:
        assert r["prediction"] == unsharded[r["file"]]["prediction"]


def test_merge_csv_reports_duplicate_and_missing_files(archive, runs, tmp_path, capsys):
    # Shard 2 never ran (its files are missing), and one file of shard 1 was also predicted elsewhere.
    extra = tmp_path / "rerun.csv"
    lines = runs["shards"][1].read_text().splitlines(keepends=True)
    extra.write_text(lines[0] + lines[1])
    duplicate = read_rows(extra)[0]["file"]
    out = tmp_path / "merged.csv"
    rc = main(["merge-csv", str(out), str(runs["shards"][0]), str(runs["shards"][1]), str(extra),
               "--folder", str(archive)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    expected_missing = sorted(r["file"] for r in read_rows(runs["shards"][2]))
    assert f"duplicate: {duplicate} in {runs['shards'][1]}, {extra}" in err
    assert sorted(line.removeprefix("missing: ") for line in err if line.startswith("missing: ")) == expected_missing
    assert err[-1].startswith("PROBLEMS: merged")
    assert f"1 duplicate, {len(expected_missing)} missing" in err[-1]
    merged = read_rows(out)
    assert [r["file"] for r in merged].count(duplicate) == 1  # written once all the same
    assert len(merged) == len(all_files(archive)) - len(expected_missing)


def test_merge_csvs_without_folder_cannot_report_missing(runs, tmp_path):
    report = merge_csvs(tmp_path / "m.csv", runs["shards"][:2])
    assert report.missing is None and report.ok
    assert "missing not checked" in report.summary()
    assert report.rows == sum(len(read_rows(p)) for p in runs["shards"][:2])


def test_merge_csvs_refuses_bad_inputs(runs, tmp_path):
    with pytest.raises(ConfigError, match="also an input"):
        merge_csvs(runs["shards"][0], runs["shards"])
    other = tmp_path / "other.csv"
    other.write_text("file,label\nx.png,glioma\n")
    with pytest.raises(ConfigError, match="other columns"):
        merge_csvs(tmp_path / "m.csv", [runs["shards"][0], other])
    no_file = tmp_path / "nofile.csv"
    no_file.write_text("name,prediction\nx.png,glioma\n")
    with pytest.raises(ConfigError, match="no 'file' column"):
        merge_csvs(tmp_path / "m.csv", [no_file])
    with pytest.raises(DataError, match="does not exist"):
        merge_csvs(tmp_path / "m.csv", [tmp_path / "absent.csv"])
    with pytest.raises(DataError, match="not a folder"):
        merge_csvs(tmp_path / "m.csv", runs["shards"], folder=tmp_path / "nowhere")
    assert not (tmp_path / "m.csv").exists()


def test_merge_csv_cli_errors_are_one_line(tmp_path, capsys):
    rc = main(["merge-csv", str(tmp_path / "m.csv"), str(tmp_path / "absent.csv")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "absent.csv" in err[0]


def test_merging_an_older_versions_flagged_row_marks_it_referred(runs, tmp_path):
    """An older version wrote a flagged slice as refer False; the merged file keeps one meaning of refer."""
    rows = read_rows(runs["shards"][0])
    rows[0].update(out_of_distribution="True", refer="False")
    old = tmp_path / "old.csv"
    with open(old, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    merge_csvs(tmp_path / "m.csv", [old])
    merged = {r["file"]: r for r in read_rows(tmp_path / "m.csv")}
    assert merged[rows[0]["file"]]["refer"] == "True"
    assert all(merged[r["file"]]["refer"] == r["refer"] for r in rows[1:])  # the others as written


def test_a_row_cut_short_by_a_killed_shard_is_left_out_and_the_merge_fails(archive, runs, tmp_path, capsys):
    """A Slurm TIMEOUT mid-write left half a row; merge-csv took it as a result (probabilities cut, no refer) and
    said ok with exit 0. Now it is left out, named, its file counts as missing, and the exit code is 1."""
    data = runs["shards"][0].read_bytes()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(data[:-75])
    lost = read_rows(runs["shards"][0])[-1]["file"]
    out = tmp_path / "merged.csv"
    rc = main(["merge-csv", str(out), str(cut), *map(str, runs["shards"][1:]), "--folder", str(archive)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("PROBLEMS: merged") and "1 rows cut short or overlong" in err[-1]
    assert any(line.startswith(f"cut short, left out: {cut} line ") for line in err)
    assert f"missing: {lost}" in err
    assert lost not in {r["file"] for r in read_rows(out)}


def test_rows_of_two_models_or_tta_settings_do_not_merge_as_ok(runs, tmp_path):
    rows = read_rows(runs["shards"][1])
    for change in ({"tta": "True" if rows[0]["tta"] != "True" else "False"}, {"model_sha256": "0" * 12}):
        other = tmp_path / "other.csv"
        with open(other, "w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]), quoting=csv.QUOTE_NONNUMERIC)
            writer.writeheader()
            writer.writerows({**r, **change} for r in rows)
        report = merge_csvs(tmp_path / "m.csv", [runs["shards"][0], other])
        assert not report.ok and len(report.models) == 2
        assert report.summary().startswith("PROBLEMS") and "2 different models or TTA settings" in report.summary()
    assert merge_csvs(tmp_path / "m.csv", runs["shards"][:2]).ok  # one model, one setting


def test_a_second_run_on_the_same_csv_is_refused_while_the_first_writes(archive, tmp_path):
    """Two runs of one shard appended to one file, their lines interleaved; the second is refused at once and the
    CSV is untouched. The lock goes with its holder: the next run proceeds."""
    from filelock import FileLock

    from brainclf.inference import Predictor
    from brainclf.inference.batch_predict import predict_folder

    out = tmp_path / "shard.csv"
    predictor = Predictor.load(MODEL)
    with FileLock(tmp_path / ".shard.csv.lock"):  # a run in progress (an OS lock: another open of it is refused)
        errors = []
        runner = threading.Thread(target=lambda: _capture(errors, predict_folder, predictor, archive, out))
        runner.start()
        runner.join()
    assert isinstance(errors[0], ConfigError) and "being written by another predict run" in str(errors[0])
    assert not out.exists()
    assert predict_folder(predictor, archive, out)["predicted"] > 0


def _capture(errors: list, fn, *args):
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the test reads what was raised
        errors.append(e)
