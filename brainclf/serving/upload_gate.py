"""Which browser sessions may upload, and how many bytes each may hold, decided before a file is stored.

Why: Streamlit's upload endpoint stores every file a live session sends (up to server.maxUploadSize each) before
any page code runs, so a visitor who never signed in, or has no role, could fill the server's memory with a
script, and a page's own per-session check came only after the bytes were held (2026-11 attack: 2 sessions
x 10 x 45 MB took the server from 115 to 1,037 MB). The app marks a session as allowed once its run has found a
role (app.py); the upload manager's `add_file` asks `UploadGate.refusal` first (`UploadGate.install`,
called when the app starts), and a refused file is never stored. The byte budget is per user, over all of the
user's browser sessions: one account opening ten tabs holds no more than it does in one.

No Streamlit import here: the gate knows session ids and byte counts, and `install` wraps the manager it is given.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from starlette.exceptions import HTTPException

from ..input.limits import MAX_SESSION_UPLOAD_BYTES, size_text

# Live browser sessions the gate remembers (an ended one is forgotten): far more than one server has open at once
# (each page run of a session renews its place), few enough that summing a user's sessions stays a quick scan.
MAX_TRACKED_SESSIONS = 10_000


class UploadGate:
    """Thread-safe: the upload endpoint and the sessions' script threads both call it."""

    def __init__(self, user_budget: int = MAX_SESSION_UPLOAD_BYTES, max_sessions: int = MAX_TRACKED_SESSIONS):
        self.user_budget = user_budget  # bytes one user may hold, over all of their sessions
        self.max_sessions = max_sessions
        # allowed session id -> its user's id, the least recently seen first: nothing says when a session ends
        self._user_of: OrderedDict[str, str] = OrderedDict()
        # session id -> its case book (anything with `held_bytes`): the uploads it keeps after the box is emptied
        self._books: dict[str, object] = {}
        self._lock = threading.Lock()
        # Held from a file's check to its storing: two uploads at once (two tabs) must not both pass one budget.
        self._admitting = threading.Lock()
        # Held by a case book from reading what the user's other sessions hold to reserving its own results.
        self.results_lock = threading.Lock()

    def allow(self, session_id: str, user_id: str = "") -> None:
        """This session's user (`user_id`; "" for a session standing alone) has a role that may upload. Called on
        every page run. An ended session is forgotten when the server drops its files (install); past
        `max_sessions` live ones, the least recently seen is forgotten too (its next upload is refused until its
        page runs again, and its stored files stop counting for its user), so the map stays bounded."""
        with self._lock:
            self._user_of[session_id] = user_id or f"session:{session_id}"
            self._user_of.move_to_end(session_id)
            while len(self._user_of) > self.max_sessions:
                self._books.pop(self._user_of.popitem(last=False)[0], None)

    def revoke(self, session_id: str) -> None:
        """Signed out, or no role: the session's next upload is refused."""
        with self._lock:
            self._user_of.pop(session_id, None)
            self._books.pop(session_id, None)

    def register_book(self, session_id: str, book) -> None:
        """The case book of an allowed session (its `held_bytes`: the uploads it keeps): it counts towards its
        user's budget in the user's other sessions (ten tabs' case books are not ten budgets)."""
        with self._lock:
            if session_id in self._user_of:
                self._books[session_id] = book

    def others_held(self, session_id: str, box_bytes=lambda sid: 0) -> int:
        """Bytes this session's user holds in their other sessions: each one's case book, or what its upload box
        holds (`box_bytes(session id)`) where that is more (a file not yet taken into the book)."""
        with self._lock:
            books = dict(self._books)
        return sum(max(box_bytes(sid), getattr(books.get(sid), "held_bytes", 0))
                   for sid in self.sessions_of_user(session_id) if sid != session_id)

    def others_results(self, session_id: str) -> int:
        """Bytes of results (model inputs, Grad-CAM maps) this session's user holds in their other sessions' case
        books: the results budget is the user's too (eight tabs held eight times it)."""
        with self._lock:
            books = dict(self._books)
        return sum(getattr(books.get(sid), "held_result_bytes", 0)
                   for sid in self.sessions_of_user(session_id) if sid != session_id)

    def allowed(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._user_of

    def sessions_of_user(self, session_id: str) -> list[str]:
        """The allowed sessions of this session's user, itself included ([] when it is not allowed)."""
        with self._lock:
            user = self._user_of.get(session_id)
            return [sid for sid, u in self._user_of.items() if u == user] if user is not None else []

    def refusal(self, session_id: str, new_bytes: int, held_bytes: int) -> str | None:
        """Why a file of `new_bytes` may not be stored for a session whose user already holds `held_bytes` (over
        all of the user's sessions), or None."""
        if not self.allowed(session_id):
            return "uploads need a signed-in user with a role"
        if held_bytes + new_bytes > self.user_budget:
            return (f"you already hold {size_text(held_bytes)} of uploads in this app; at most "
                    f"{size_text(self.user_budget)} for each user, over all of their browser tabs: close your other "
                    "tabs of this app to free room")
        return None

    def install(self, manager) -> None:
        """Make the server's upload manager (Streamlit's UploadedFileManager) refuse a file this gate refuses
        (HTTP 403) instead of storing it, and forget a session when the server drops its files (a session's
        shutdown does), so the gate holds live sessions only; installing it twice still checks each file once."""
        if getattr(manager, "brainclf_gate", None) is self:
            return
        store, drop = manager.add_file, manager.remove_session_files

        def remove_session_files(session_id: str) -> None:
            drop(session_id)
            self.revoke(session_id)

        def box(sid: str, leave_out: str = "") -> int:
            return sum(len(f.data) for f in list(manager.file_storage.get(sid, {}).values()) if f.file_id != leave_out)

        def add_file(session_id: str, file) -> None:
            # This session's box (a file sent again replaces itself) and the user's other sessions; this session's
            # own case book makes room by dropping its oldest cases (presentation.cases.CaseBook).
            with self._admitting:
                held = box(session_id, leave_out=file.file_id) + self.others_held(session_id, box)
                if why := self.refusal(session_id, len(file.data), held):
                    raise HTTPException(status_code=403, detail=why)
                store(session_id, file)

        manager.add_file, manager.remove_session_files, manager.brainclf_gate = add_file, remove_session_files, self


GATE = UploadGate()  # the server's one gate (one Streamlit server per process)
