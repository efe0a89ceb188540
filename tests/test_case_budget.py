"""A session's CaseBook holds its results' pictures (model input and Grad-CAM) within a byte budget: one model's
results a case, older cases' pictures give way first, and what does not fit is refused with a message."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from brainclf.input import limits
from brainclf.presentation import CaseBook
from brainclf.presentation.cases import result_nbytes

CONTRACT = SimpleNamespace(size=4, channels=1)  # 4x4 grayscale: 64 bytes of input + 64 of map a slice
SLICE = 128


def prediction(predicted: str = "glioma") -> SimpleNamespace:
    """What history_rows and the budget read of a Prediction, with 4x4 float32 pictures."""
    return SimpleNamespace(predicted=predicted, confidence=0.9, out_of_distribution=False, referred=False,
                           model_input=np.zeros((4, 4, 1), np.float32), heatmap=np.zeros((4, 4), np.float32))


def analyse(book: CaseBook, digests: list[str], model: str, keep=()) -> tuple[list[str], str | None]:
    """What pages/predict.py does: admit, then compute and store what has no usable result."""
    admitted, refused = book.admit(digests, model, CONTRACT, keep)
    for d in admitted:
        if book.usable(d, model) is None:
            book.store(d, model, prediction())
    return admitted, refused


def test_a_case_holds_one_model_labels_result():
    book = CaseBook()
    d = book.add("a.png", b"a").digest
    book.store(d, "m1", prediction("glioma"))
    book.store(d, "m1 +TTA", prediction("pituitary"))
    assert list(book.get(d).results) == ["m1 +TTA"] and list(book.get(d).analysed) == ["m1 +TTA"]
    assert book.result(d, "m1") is None and result_nbytes(book.result(d, "m1 +TTA")) == SLICE


def test_another_models_pictures_give_way_and_its_answer_stays_in_the_history():
    book = CaseBook()
    d = book.add("a.png", b"a").digest
    analyse(book, [d], "m1")
    book.add("b.png", b"b")
    analyse(book, [book.cases()[-1].digest], "m2")
    assert book.result_bytes() == SLICE  # only m2's slice keeps pictures
    assert book.usable(d, "m1") is None  # shown again with m1, it is computed again
    row = next(r for r in book.history_rows("m2") if r["file"] == "a.png")
    assert row["model"] == "m1" and row["prediction"] == "Glioma" and row["status"] != "not analysed"


def test_studies_over_the_budget_are_refused_whole_with_the_slices_the_limit_and_what_to_do():
    book = CaseBook(max_result_bytes=5 * SLICE)
    study = book.add_upload("s.dcm", b"study", lambda: 4)
    other = book.add_upload("t.dcm", b"other", lambda: 3)
    single = book.add("a.png", b"a")
    shown = [c.digest for c in [*study, *other, single]]
    admitted, refused = analyse(book, shown, "m")
    assert admitted == [c.digest for c in study] + [single.digest]  # the 3-slice study does not fit, the image does
    assert book.result_bytes() == 5 * SLICE
    assert refused.startswith(f"Not analysed: 3 slices ({other[0].study[:12]}).")
    assert "at most 5 slices with this model (640 bytes)" in refused and "on this page have 8 slices" in refused
    assert "Remove a study from the upload box" in refused and "t.dcm" not in refused
    assert analyse(book, shown, "m") == (admitted, refused)  # a rerun computes nothing more


def test_cases_no_longer_shown_give_way_oldest_first():
    book = CaseBook(max_result_bytes=2 * SLICE)
    a, b, c = (book.add(f"{k}.png", k.encode()).digest for k in "abc")
    analyse(book, [a], "m")
    analyse(book, [b], "m")
    admitted, refused = analyse(book, [c], "m")  # the user removed a and b from the box and uploaded c
    assert admitted == [c] and refused is None
    assert book.usable(a, "m") is None and book.usable(b, "m") is not None  # the oldest went
    assert book.history_rows("m")[-1]["prediction"] == "Glioma"  # a's answer is still in the history
    assert analyse(book, [b, c], "m")[1] is None  # both still fit: nothing is recomputed or refused


def test_cases_on_the_page_are_never_let_go_to_make_room():
    book = CaseBook(max_result_bytes=2 * SLICE)
    a, b, c = (book.add(f"{k}.png", k.encode()).digest for k in "abc")
    analyse(book, [a, b], "m")
    admitted, refused = analyse(book, [c], "m", keep=[a, b])  # "Open a case" below two cases shown
    assert admitted == [] and "Not analysed: 1 slice" in refused
    assert book.usable(a, "m") is not None and book.usable(b, "m") is not None


def test_fifty_tiny_stacks_and_two_models_stay_within_the_budget(monkeypatch):
    """The review's case: 50 64-frame DICOMs (3,200 slices, 625 MiB a model at 160 px) switched between models."""
    monkeypatch.setattr(limits, "MAX_SESSION_RESULT_BYTES", 20 * 64 * SLICE)  # 20 studies' worth
    book = CaseBook()
    boxes = [[c.digest for i in range(k, k + 10) for c in book.add_upload(f"{i}.dcm", bytes([i]), lambda: 64)]
             for k in range(0, 50, 10)]  # the upload box holds 10 studies at a time
    for model in ("m", "m +TTA", "m"):
        for box in boxes:
            admitted, refused = analyse(book, box, model)
            assert admitted == box and refused is None
            assert book.result_bytes() <= book.max_result_bytes
    assert len(book) == 3200 and all(len(c.results) == 1 for c in book.cases())


def test_the_uploads_a_session_keeps_are_bounded_in_bytes_the_oldest_study_going_first():
    """A session goes through any number of studies one upload box at a time: the book keeps the newest within
    max_upload_bytes (a multi-frame file's frames share its bytes, counted once), and the newest always stays."""
    book = CaseBook(max_upload_bytes=250)
    first = book.add("a.png", b"a" * 100)
    stack = book.add_upload("b.dcm", b"b" * 100, lambda: 3)  # three frames, one file of 100 bytes
    assert book.upload_bytes() == 200 and len(book) == 4
    book.add("c.png", b"c" * 100)  # 300 > 250: the oldest study goes
    assert first.digest not in book and all(c.digest in book for c in stack) and book.upload_bytes() == 200
    big = book.add("d.png", b"d" * 400)  # larger than the bound alone: kept, everything older goes
    assert [c.digest for c in book.cases()] == [big.digest] and book.upload_bytes() == 400


def test_a_session_uploads_study_after_study_and_only_what_the_box_holds_counts():
    from brainclf.errors import ImageError
    from brainclf.input import check_upload_session

    for k in range(2 * limits.MAX_SESSION_UPLOAD_BYTES // limits.MAX_UPLOAD_FILE_BYTES):
        check_upload_session({f"f{k}": limits.MAX_UPLOAD_FILE_BYTES})  # one large study after another
    fits = limits.MAX_SESSION_UPLOAD_BYTES // limits.MAX_UPLOAD_FILE_BYTES
    check_upload_session({f"g{k}": limits.MAX_UPLOAD_FILE_BYTES for k in range(fits)})
    try:
        check_upload_session({f"h{k}": limits.MAX_UPLOAD_FILE_BYTES for k in range(fits + 1)})
    except ImageError as e:
        assert "Remove some files from the upload box" in str(e) and "Reload" not in str(e)
    else:
        raise AssertionError("a box holding more than a session's bytes was accepted")


def test_a_study_uploaded_again_is_the_newest_again():
    """A file back in the upload box must not be the first to go: it would be analysed (and audited) again."""
    book = CaseBook(max_upload_bytes=250)
    a = book.add("a.png", b"a" * 100)
    book.add("c.png", b"c" * 100)
    assert book.add("a.png", b"a" * 100) is a  # A in the box again
    book.add("b.png", b"b" * 100)  # 300 > 250: C, now the oldest, goes
    assert a.digest in book and [c.name for c in book.cases()] == ["a.png", "b.png"]


def test_the_history_reads_this_models_results_with_the_refer_rule_in_force():
    """A case not shown since an admin raised the refer target read 'Not referred' in the history and 'Refer' when
    opened; another model's answer keeps its own status (the rule in force is not its)."""
    from brainclf import CLASS_NAMES
    from brainclf.presentation import refer_rule
    from brainclf.presentation.wording import HEADLINES

    book = CaseBook()
    d = book.add("a.png", b"a").digest
    answered = prediction("glioma")
    answered.probabilities = {c: 0.9 if c == "glioma" else 0.1 / 3 for c in CLASS_NAMES}
    book.store(d, "m", answered)
    strict = refer_rule({c: 0.95 for c in CLASS_NAMES}, None)
    assert book.history_rows("m")[0]["status"] == HEADLINES["accept"]  # as stored
    referred = book.history_rows("m", rule=strict)[0]
    assert referred["status"] == HEADLINES["refer"]
    assert referred["prediction"] == "Refer (model leans Glioma, 90.0 %)"  # never a bare answer, as the batch table
    assert book.history_rows("other", rule=strict)[0]["status"] == HEADLINES["accept"]  # m's answer, m's rule


def test_the_results_budget_is_the_users_over_all_of_their_tabs():
    """Each tab held its own 128 MiB of results: eight scripted tabs of one user held a gigabyte. The upload gate
    tells a book what the user's other sessions hold, and the book makes room within what is left."""
    from brainclf.serving.upload_gate import UploadGate

    gate = UploadGate()
    books = {}
    for sid in ("tab1", "tab2", "other-user"):
        gate.allow(sid, "alice" if sid != "other-user" else "bob")
        books[sid] = CaseBook(max_result_bytes=5 * SLICE, others_results=lambda sid=sid: gate.others_results(sid))
        gate.register_book(sid, books[sid])
    first = [c.digest for c in books["tab1"].add_upload("s.dcm", b"study", lambda: 4)]
    assert analyse(books["tab1"], first, "m") == (first, None)
    assert books["tab1"].held_result_bytes == 4 * SLICE and gate.others_results("tab2") == 4 * SLICE
    second = [c.digest for c in books["tab2"].add_upload("t.dcm", b"other", lambda: 2)]
    admitted, refused = analyse(books["tab2"], second, "m")
    assert admitted == [] and "your other tabs of this app hold 512 bytes of it, and closing them frees it" in refused
    third = [c.digest for c in books["other-user"].add_upload("t.dcm", b"other", lambda: 2)]
    assert analyse(books["other-user"], third, "m") == (third, None)  # another user's budget is their own


def test_a_batch_still_being_computed_counts_in_full_for_the_users_other_tabs():
    """The first result stored used to lower what the tab held to the one slice computed so far: the user's other
    tab then admitted a budget of its own while the first was still working through its batch."""
    from brainclf.serving.upload_gate import UploadGate

    gate = UploadGate()
    books = {}
    for sid in ("tab1", "tab2"):
        gate.allow(sid, "alice")
        books[sid] = CaseBook(max_result_bytes=10 * SLICE, others_results=lambda sid=sid: gate.others_results(sid),
                              admit_lock=gate.results_lock)
        gate.register_book(sid, books[sid])
    batch = [c.digest for c in books["tab1"].add_upload("s.dcm", b"study", lambda: 10)]
    admitted, _ = books["tab1"].admit(batch, "m", CONTRACT)
    books["tab1"].store(admitted[0], "m", prediction())  # one slice of ten computed so far
    assert gate.others_results("tab2") == 10 * SLICE
    other = [c.digest for c in books["tab2"].add_upload("t.dcm", b"other", lambda: 9)]
    assert books["tab2"].admit(other, "m", CONTRACT)[0] == []
