"""brainclf.data.dedup: difference hashes, Hamming distances, duplicate groups and the dedup report."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
from PIL import Image

from brainclf import CLASS_NAMES
from brainclf.data import (
    HASH_SIZE,
    NEAR_DUP_THRESHOLD,
    FileHashes,
    dedup_report,
    dhash,
    discover,
    duplicate_groups,
    format_dedup_report,
    hamming_matrix,
    hash_files,
    near_pairs,
)


def distance(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(a ^ b).sum())


def reencode(img: Image.Image, fmt: str = "JPEG", **kw) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_dhash_shape(make_image):
    h = dhash(make_image())
    assert h.dtype == np.uint8 and h.shape == (HASH_SIZE * HASH_SIZE // 8,)


def test_dhash_same_for_reencoded_and_resized_copy(make_image):
    img = make_image("meningioma", seed=4)
    h = dhash(img)
    assert distance(h, dhash(img.copy())) == 0
    assert distance(h, dhash(reencode(img, quality=85))) <= NEAR_DUP_THRESHOLD
    assert distance(h, dhash(img.resize((57, 57), Image.Resampling.BICUBIC))) <= NEAR_DUP_THRESHOLD
    assert distance(h, dhash(img.convert("RGB"))) == 0


def test_dhash_distant_for_different_images(make_image):
    a, b = make_image("glioma", seed=1), make_image("glioma", seed=2)
    assert distance(dhash(a), dhash(b)) > 2 * NEAR_DUP_THRESHOLD
    assert distance(dhash(a), dhash(make_image("pituitary", seed=3))) > 2 * NEAR_DUP_THRESHOLD


def test_nearest_distance_in_chunks_is_the_whole_matrix_minimum():
    from brainclf.data.dedup import nearest_distance

    rng = np.random.default_rng(3)
    a, b = (rng.integers(0, 256, (n, 32), dtype=np.uint8) for n in (2500, 40))
    assert np.array_equal(nearest_distance(a, b, chunk=1000), hamming_matrix(a, b).min(1))
    assert nearest_distance(a[:0], b).shape == (0,)


def test_hamming_matrix_matches_brute_force():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (7, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    b[0] = a[3]
    d = hamming_matrix(a, b)
    assert d.shape == (7, 5)
    expected = np.array([[bin(int.from_bytes(x.tobytes(), "big") ^ int.from_bytes(y.tobytes(), "big")).count("1")
                          for y in b] for x in a])
    assert np.array_equal(d, expected)
    assert d[3, 0] == 0
    assert hamming_matrix(a[:1], np.bitwise_not(a[:1]))[0, 0] == 256


def test_near_pairs_within_and_across():
    a = np.zeros((3, 32), np.uint8)
    a[1, 0] = 0b111  # 3 bits from row 0
    a[2] = 0xFF  # 256 bits from row 0
    assert near_pairs(a, threshold=5) == [(0, 1, 3)]
    assert near_pairs(a, a[:1], threshold=5) == [(0, 0, 0), (1, 0, 3)]
    assert near_pairs(a, threshold=5, chunk=1) == [(0, 1, 3)]


def test_duplicate_groups_union_exact_and_near():
    h = np.zeros((5, 32), np.uint8)
    h[0, :] = 0x0F
    h[1, :] = 0x0F
    h[1, 0] = 0x0E  # file 1 ~ file 0 (near, 1 bit)
    h[2, :] = 0xF0  # file 2: far from all by hash ...
    h[3, :] = 0x33
    h[4, :] = 0xCC
    shas = ["s0", "s1", "s2", "s2", "s4"]  # ... but file 3 is a byte-exact copy of file 2
    g = duplicate_groups(FileHashes([f"f{i}" for i in range(5)], shas, h, np.ones(5, bool)))
    assert g[0] == g[1]
    assert g[2] == g[3]
    assert len({g[0], g[2], g[4]}) == 3
    # chains are transitive: 0 ~ 1, and 1 ~ 4 makes 0, 1, 4 one group
    h[4] = h[1]
    h[4, 1] = 0x0E
    g2 = duplicate_groups(FileHashes([f"f{i}" for i in range(5)], shas, h, np.ones(5, bool)))
    assert g2[0] == g2[1] == g2[4]


def test_hash_files_groups_copies(tmp_path, make_image):
    img = make_image("notumor", seed=8)
    img.save(tmp_path / "a.png")
    shutil.copy(tmp_path / "a.png", tmp_path / "a_copy.png")
    img.resize((60, 60)).save(tmp_path / "a_small.jpg", quality=90)
    make_image("notumor", seed=9).save(tmp_path / "b.png")
    (tmp_path / "broken.png").write_bytes(b"garbage")
    paths = [tmp_path / n for n in ("a.png", "a_copy.png", "a_small.jpg", "b.png", "broken.png")]
    seen = []
    hashes = hash_files(paths, progress=lambda d, t: seen.append(d))
    assert hashes.sha256[0] == hashes.sha256[1] != hashes.sha256[2]
    assert hashes.dhash.shape == (5, 32)
    assert not hashes.dhash[4].any()  # unreadable file: zero hash
    g = duplicate_groups(hashes)
    assert g[0] == g[1] == g[2]
    assert len(set(g[[0, 3, 4]])) == 3
    assert seen[-1] == 5


def test_dedup_report_counts_cross_split_pairs(tmp_path, make_image):
    for split in ("Training", "Testing"):
        for c in CLASS_NAMES:
            (tmp_path / split / c).mkdir(parents=True)
    for i, c in enumerate(CLASS_NAMES):
        for k in range(2):
            make_image(c, seed=10 * i + k).save(tmp_path / "Training" / c / f"{k}.png")
        make_image(c, seed=500 + i).save(tmp_path / "Testing" / c / "clean.png")
    tr = tmp_path / "Training"
    te = tmp_path / "Testing"
    shutil.copy(tr / "glioma" / "0.png", te / "glioma" / "exact.png")  # exact cross-split duplicate
    Image.open(tr / "pituitary" / "1.png").resize((60, 60)).save(te / "meningioma" / "near.jpg", quality=92)
    shutil.copy(tr / "notumor" / "0.png", tr / "notumor" / "0_again.png")  # within Training

    report = dedup_report(discover(tmp_path))
    assert report["files"] == 8 + 1 + 4 + 2
    assert report["splits"] == {"Testing": 6, "Training": 9}
    cross = report["pairs"]["Testing x Training"]
    assert cross["exact_pairs"] == 1
    assert cross["near_pairs"] == 2  # both pairs are also near (distance 0 for the exact copy)
    assert cross["label_conflicts"] == 1  # pituitary in Training, meningioma in Testing
    assert cross["examples"][0]["same_label"] is False  # conflicts listed first
    within = report["pairs"]["Training"]
    assert within["exact_pairs"] == 1 and within["label_conflicts"] == 0
    assert report["groups"] == 15 - 3
    leak = report["leakage"]["Testing"]
    assert leak == {**leak, "n": 6, "with_near_duplicate_in_training": 2, "clean": 4}
    assert sum(leak["nearest_distance_histogram"]["counts"]) == 6
    text = format_dedup_report(report)
    assert "LABEL CONFLICT" in text and "2 of 6 images have a near duplicate" in text


def test_dedup_report_clean_pooled(tmp_path, make_image):
    for i, c in enumerate(CLASS_NAMES):
        (tmp_path / c).mkdir()
        make_image(c, seed=i).save(tmp_path / c / "x.png")
    report = dedup_report(discover(tmp_path), threshold=5)
    assert report["pairs"] == {} and report["groups"] == 4 and report["threshold"] == 5
    assert "leakage" not in report
    assert "no exact or near duplicates found" in format_dedup_report(report)


def test_unreadable_and_missing_files_are_near_nothing_and_named(tmp_path, make_image):
    from brainclf.data.dedup import clean_mask

    for cls in ("glioma", "pituitary"):
        (tmp_path / "ds" / cls).mkdir(parents=True)
    (tmp_path / "ds" / "glioma" / "cut.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 40)  # a truncated JPEG
    (tmp_path / "ds" / "pituitary" / "oops.jpg").write_bytes(b"oops")
    Image.new("L", (64, 64)).save(tmp_path / "ds" / "pituitary" / "black.png")  # a uniform image: zero hash too
    report = dedup_report(discover(tmp_path / "ds"))
    assert report["pairs"] == {}  # two unreadable files were once 'near duplicates with a label conflict'
    assert sorted(report["unreadable"]) == ["glioma/cut.jpg", "pituitary/oops.jpg"]
    assert "unreadable (left out of near duplicates): 2" in format_dedup_report(report)
    train = [tmp_path / "ds" / "pituitary" / "oops.jpg", tmp_path / "gone.png"]  # a listed file since removed
    assert hash_files(train).readable.tolist() == [False, False]
    assert clean_mask([tmp_path / "ds" / "pituitary" / "black.png"], train).tolist() == [True]


def test_hashes_are_remembered_per_unchanged_file_and_taken_again_when_it_changes(tmp_path, monkeypatch):
    """A server's second evaluation re-hashed the model's ~7,000 training images; a changed file is hashed anew,
    and a file changed this instant is not remembered (its time stamps could stay the same through a rewrite)."""

    from brainclf.data import dedup

    rng = np.random.default_rng(5)
    path = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(path)
    reads = []
    real = dedup.read_image_file
    monkeypatch.setattr(dedup, "read_image_file", lambda p: reads.append(p) or real(p))
    monkeypatch.setattr(dedup, "_SETTLED_NS", 10**15)  # nothing has settled yet
    first = dedup.hash_files([path])
    dedup.hash_files([path])
    assert len(reads) == 2  # just written: not remembered
    monkeypatch.setattr(dedup, "_SETTLED_NS", -1)  # everything has
    dedup.hash_files([path])
    again = dedup.hash_files([path])
    assert len(reads) == 3 and again.sha256 == first.sha256 and np.array_equal(again.dhash, first.dhash)
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(path)  # rewritten: its change time moves
    changed = dedup.hash_files([path])
    assert len(reads) == 4 and changed.sha256 != first.sha256
    path.chmod(0o000)  # unreadable now: its change time moves too, so it is read (and fails) again
    try:
        assert not dedup.hash_files([path]).readable[0] or os.geteuid() == 0
    finally:
        path.chmod(0o644)


def test_clean_mask_leaves_out_a_reencoded_copy_of_a_training_image(tmp_path, make_image):
    """The clean subset is what an evaluation reports as 'never seen': a training slice saved again as a JPEG
    (other bytes, so no exact duplicate, but the same picture) must not be in it; an unrelated slice must."""
    from brainclf.data.dedup import clean_mask

    train = [tmp_path / f"train_{k}.png" for k in range(3)]
    for k, path in enumerate(train):
        make_image(("glioma", "meningioma", "pituitary")[k], seed=20 + k).save(path)
    reencoded, unrelated = tmp_path / "reencoded.jpg", tmp_path / "unrelated.png"
    Image.open(train[1]).convert("L").save(reencoded, quality=85)
    make_image("notumor", seed=99).save(unrelated)
    hashes = hash_files([*train, reencoded, unrelated])
    assert hashes.sha256[1] != hashes.sha256[3]  # not an exact duplicate: only the near test can catch it
    assert distance(hashes.dhash[1], hashes.dhash[3]) <= NEAR_DUP_THRESHOLD
    assert min(distance(hashes.dhash[k], hashes.dhash[4]) for k in range(3)) > NEAR_DUP_THRESHOLD
    assert clean_mask([reencoded, unrelated], train).tolist() == [False, True]


def test_clean_mask_counts_a_distance_of_exactly_the_threshold_as_a_near_duplicate(monkeypatch):
    """dedup's rule is 'near when the hashes differ in at most NEAR_DUP_THRESHOLD bits': at the threshold an image
    is not clean, one bit further it is."""
    from brainclf.data import dedup

    base = np.random.default_rng(4).integers(0, 256, HASH_SIZE * HASH_SIZE // 8, dtype=np.uint8)

    def flipped(bits: int) -> np.ndarray:
        mask = np.unpackbits(np.zeros_like(base))
        mask[:bits] = 1
        return base ^ np.packbits(mask)

    assert distance(base, flipped(NEAR_DUP_THRESHOLD)) == NEAR_DUP_THRESHOLD
    by_name = {"train": base, "at": flipped(NEAR_DUP_THRESHOLD), "above": flipped(NEAR_DUP_THRESHOLD + 1),
               "far": ~base}

    def fake_hash_files(paths, progress=None):
        return FileHashes(list(paths), [f"sha-{p}" for p in paths], np.stack([by_name[p] for p in paths]),
                          np.ones(len(paths), bool))

    monkeypatch.setattr(dedup, "hash_files", fake_hash_files)
    assert dedup.clean_mask(["at", "above", "far"], ["train"]).tolist() == [False, True, True]
    assert dedup.clean_mask(["above"], ["train"], threshold=NEAR_DUP_THRESHOLD + 1).tolist() == [False]
