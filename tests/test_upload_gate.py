"""The upload gate: Streamlit's upload endpoint stores a file only for a session whose user has a role, and only
within that user's byte budget over all of their sessions (brainclf.serving.upload_gate; app.py installs it on the
server's upload manager)."""

from __future__ import annotations

import pytest
from starlette.exceptions import HTTPException
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.uploaded_file_manager import UploadedFileRec
from test_access_pages import app_as, server_settings, signed_in  # noqa: F401 - fixture

from brainclf.serving import UploadGate


def rec(file_id: str, size: int) -> UploadedFileRec:
    return UploadedFileRec(file_id=file_id, name="x.png", type="image/png", data=b"\0" * size)


def test_the_gate_refuses_sessions_without_a_role_and_over_their_budget():
    gate = UploadGate(user_budget=100)
    assert "role" in gate.refusal("s1", 10, 0)
    gate.allow("s1")
    assert gate.refusal("s1", 60, 40) is None
    assert "at most 100 bytes" in gate.refusal("s1", 61, 40)
    gate.revoke("s1")
    assert gate.refusal("s1", 1, 0)


def test_the_server_manager_never_stores_a_refused_file():
    gate, manager = UploadGate(user_budget=100), MemoryUploadedFileManager("/upload")
    gate.install(manager)
    gate.install(manager)  # installed twice: still one check per file
    with pytest.raises(HTTPException) as refused:
        manager.add_file("stranger", rec("a", 10))
    assert refused.value.status_code == 403 and not manager.file_storage.get("stranger")
    gate.allow("doc")
    manager.add_file("doc", rec("a", 60))
    manager.add_file("doc", rec("a", 70))  # the same file sent again replaces itself
    with pytest.raises(HTTPException, match="403"):
        manager.add_file("doc", rec("b", 40))  # 70 + 40 > 100
    assert {f.file_id: len(f.data) for f in manager.file_storage["doc"].values()} == {"a": 70}


def test_a_users_budget_spans_all_of_their_sessions():
    gate, manager = UploadGate(user_budget=100), MemoryUploadedFileManager("/upload")
    gate.install(manager)
    for tab in ("tab1", "tab2"):
        gate.allow(tab, "sub:doc")
    gate.allow("other", "sub:nurse")
    manager.add_file("tab1", rec("a", 60))
    with pytest.raises(HTTPException, match="over all of their browser tabs"):
        manager.add_file("tab2", rec("b", 41))  # 60 held in the first tab + 41 > 100
    manager.add_file("tab2", rec("b", 40))
    manager.add_file("other", rec("c", 100))  # another user: a budget of their own
    manager.add_file("tab1", rec("a", 20))  # the first tab's file sent again replaces itself: 20 + 40
    gate.revoke("tab1")  # signed out in one tab: the others keep the user's budget, the tab is refused
    with pytest.raises(HTTPException, match="403"):
        manager.add_file("tab1", rec("d", 1))
    manager.add_file("tab2", rec("e", 60))  # tab1's 20 bytes, still stored, no longer count as this user's
    assert gate.sessions_of_user("tab2") == ["tab2"] and gate.sessions_of_user("tab1") == []


def test_sessions_without_a_user_id_each_stand_alone():
    gate, manager = UploadGate(user_budget=100), MemoryUploadedFileManager("/upload")
    gate.install(manager)
    gate.allow("s1")
    gate.allow("s2")
    manager.add_file("s1", rec("a", 100))
    manager.add_file("s2", rec("b", 100))
    assert gate.sessions_of_user("s1") == ["s1"]


def test_the_app_opens_uploads_only_for_a_role_that_may_predict(server_settings, monkeypatch):  # noqa: F811
    from brainclf.serving import GATE

    calls = []
    monkeypatch.setattr(GATE, "allow", lambda sid, user="": calls.append(("allow", sid, user)))
    monkeypatch.setattr(GATE, "revoke", lambda sid: calls.append(("revoke", sid)))
    app_as({"is_logged_in": True, "email": "stranger@elsewhere.example", "sub": "x"}).run()
    app_as(None).run()
    assert [c[0] for c in calls] == ["revoke", "revoke"]
    app_as(signed_in("clinician")).run()
    assert calls[-1][0] == "allow" and calls[-1][1] and calls[-1][2].startswith("sub:")


def test_the_gate_forgets_the_sessions_least_recently_seen_past_its_bound():
    gate = UploadGate(user_budget=100, max_sessions=3)
    for sid in ("a", "b", "c"):
        gate.allow(sid, "sub:doc")
    gate.allow("a", "sub:doc")  # a page run of session a: it is recent again
    gate.allow("d", "sub:doc")
    assert not gate.allowed("b") and all(gate.allowed(s) for s in "acd")
    assert sorted(gate.sessions_of_user("a")) == ["a", "c", "d"]


def test_an_ended_session_is_forgotten_with_its_files():
    """Streamlit drops a session's files when the session shuts down: the gate forgets the session then, so it
    keeps live sessions only and its bound is never reached by sessions long gone."""
    gate, manager = UploadGate(user_budget=100, max_sessions=2), MemoryUploadedFileManager("/upload")
    gate.install(manager)
    gate.install(manager)
    gate.allow("tab1", "sub:doc")
    manager.add_file("tab1", rec("a", 60))
    manager.remove_session_files("tab1")  # what AppSession.shutdown calls
    assert not gate.allowed("tab1") and not manager.file_storage.get("tab1")
    for sid in ("tab2", "tab3"):
        gate.allow(sid, "sub:doc")
    manager.add_file("tab2", rec("b", 60))
    with pytest.raises(HTTPException, match="over all of their browser tabs"):
        manager.add_file("tab3", rec("c", 41))  # both live sessions are remembered: tab2's 60 bytes still count
    assert sorted(gate.sessions_of_user("tab3")) == ["tab2", "tab3"]


def test_the_case_books_of_a_users_other_tabs_count_towards_their_budget():
    """A review: each tab's case book kept up to the whole budget after its box was emptied, so N tabs held N
    budgets. Another tab's book counts here; a tab's own book makes room by letting its oldest cases go."""
    from brainclf.presentation import CaseBook

    gate, manager = UploadGate(user_budget=100), MemoryUploadedFileManager("/upload")
    gate.install(manager)
    books = {}
    for tab in ("tab1", "tab2"):
        gate.allow(tab, "sub:doc")
        books[tab] = CaseBook(max_upload_bytes=100, others_held=lambda tab=tab: gate.others_held(tab))
        gate.register_book(tab, books[tab])
    manager.add_file("tab1", rec("a", 70))
    books["tab1"].add("a.png", b"a" * 70)
    manager.remove_file("tab1", "a")  # the box emptied: the case book keeps it
    with pytest.raises(HTTPException, match="over all of their browser tabs"):
        manager.add_file("tab2", rec("b", 31))  # 70 kept by the first tab + 31 > 100
    manager.add_file("tab2", rec("b", 30))
    books["tab2"].add("b.png", b"b" * 30)  # the page run takes the box's file into the book
    first = books["tab1"].add("c.png", b"c" * 20)  # the first tab's own book: 70 + 20, with the other tab's 30
    assert books["tab1"].held_bytes == 20 and [c.digest for c in books["tab1"].cases()] == [first.digest]
    gate.revoke("tab1")  # a tab signed out (or ended) no longer counts
    assert gate.others_held("tab2") == 0


def test_two_uploads_at_once_never_both_pass_one_budget():
    import threading
    import time

    gate, manager = UploadGate(user_budget=100), MemoryUploadedFileManager("/upload")
    slow_store = manager.add_file

    def storing_slowly(session_id, file):  # the window between a file's check and its storing, widened
        time.sleep(0.2)
        slow_store(session_id, file)

    manager.add_file = storing_slowly
    gate.install(manager)
    for tab in ("tab1", "tab2"):
        gate.allow(tab, "sub:doc")
    refused = []

    def upload(tab):
        try:
            manager.add_file(tab, rec(f"file-{tab}", 60))
        except HTTPException:
            refused.append(tab)

    tabs = [threading.Thread(target=upload, args=(tab,)) for tab in ("tab1", "tab2")]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    held = sum(len(f.data) for files in manager.file_storage.values() for f in files.values())
    assert len(refused) == 1 and held == 60
