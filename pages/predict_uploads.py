"""The Predict page's upload box: what it may hold (files per upload and bytes per session, checked on each file's
size before any bytes are read) and the cases its files become in the session's case book."""

import streamlit as st

from brainclf.errors import BrainclfError
from brainclf.input import check_upload_session, series_groups, study_frames, upload_alias
from brainclf.presentation.batch_table import repeated_names
from pages.common import case_book


def upload_problem(files) -> str | None:
    """Files per upload and bytes per session (brainclf.input.limits), checked on each UploadedFile.size before any
    file's bytes are read (getvalue): a refused upload is never copied into the case book."""
    try:
        check_upload_session({f.file_id: f.size for f in files})
    except BrainclfError as e:
        return str(e)
    return None


def uploads_changed() -> None:
    """The upload box's on_change: show exactly its files (an emptied box shows nothing)."""
    files = st.session_state.get("uploads") or []
    if upload_problem(files):
        return  # the page body shows the message
    st.session_state["shown_cases"] = cases_of_uploads(case_book(), files)


def cases_of_uploads(book, files) -> list[str]:
    """The cases of these uploads in order, each once: a multi-frame DICOM is a study, one case per frame, and so
    are single-frame DICOM slices of one series (in series order)."""
    uploads = [(f.name, f.getvalue()) for f in files]

    def cases(group: list[int]):
        if len(group) > 1:
            return book.add_series([uploads[i] for i in group])
        name, data = uploads[group[0]]
        return book.add_upload(name, data, lambda: study_frames(data, upload_alias(name)))
    groups = series_groups([(upload_alias(name), data) for name, data in uploads])  # no file name in a message
    return list(dict.fromkeys(c.digest for g in groups for c in cases(g)))


def repeated_uploads(files) -> list[tuple[str, str]]:
    """brainclf.presentation.batch_table.repeated_names of the box's files, once per set of files (each rerun would
    hash every upload again)."""
    box = tuple(f.file_id for f in files)
    if (kept := st.session_state.get("repeated_uploads")) and kept[0] == box:
        return kept[1]
    repeats = repeated_names([(f.name, f.getvalue()) for f in files])
    st.session_state["repeated_uploads"] = (box, repeats)
    return repeats
