"""The Model page's admin section: remove a model (it moves aside, recoverable), and the removed ones: restore
one under its own name, or delete it for good to make room on the server's disk (brainclf.model.removed)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from brainclf.errors import BrainclfError
from brainclf.escaping import csv_row, md_literal
from brainclf.input.limits import size_text
from brainclf.model import delete_removed, remove_model, removed_models, restore_model
from brainclf.model.model_files import REMOVED
from brainclf.presentation import count
from brainclf.serving import name_in_use
from pages.common import active_model_path, available_models, public, record_model_event, settings, training_jobs
from pages.common.session import card_file_hash


def removal_section(who, models_dir: Path) -> None:
    with st.expander("Remove a model (admins)"):
        _remove(models_dir)
    removed = removed_models(models_dir)
    with st.expander(f"Removed models ({count(len(removed))}, {size_text(sum(e.size_bytes for e in removed))})"):
        _removed(who, models_dir, removed)


def _remove(models_dir: Path) -> None:
    removable = [p for p in available_models() if p != active_model_path()]
    if not removable:
        st.caption("No model to remove (the active model in the sidebar cannot be removed).")
        return
    doomed = st.selectbox("Model to remove", removable, format_func=lambda p: p.stem, key="remove_pick")
    st.caption("The model and its card move to the removed models below (restorable until deleted for good); "
               "they leave every user's model picker.")
    if st.button("Remove", key="remove_model", icon=":material/delete:"):
        try:
            moved = remove_model(doomed, models_dir)
            record_model_event("model removed", moved / doomed.name)
            st.toast(f"Removed {md_literal(doomed.stem)}")
            st.rerun()
        except BrainclfError as e:
            st.error(public(e))


def _removed(who, models_dir: Path, removed: list) -> None:
    if not removed:
        st.caption("No removed models are kept.")
        return
    st.dataframe(pd.DataFrame([csv_row({"model": e.name, "removed": e.removed_at.strftime("%Y-%m-%d %H:%M:%S"),
                                "size": size_text(e.size_bytes), "card": "yes" if e.has_card else "missing"})
                               for e in removed]), hide_index=True)
    by_folder = {e.folder: e for e in removed}
    pick = st.selectbox("Removed model", list(by_folder), key="removed_pick",
                        format_func=lambda f: f"{by_folder[f].name} (removed "
                                              f"{by_folder[f].removed_at:%Y-%m-%d %H:%M:%S})")
    entry = by_folder[pick]
    restore, delete = st.columns(2)
    if restore.button("Restore", key="removed_restore", icon=":material/restore_from_trash:",
                      disabled=not entry.has_card, use_container_width=True):
        held = partial(name_in_use, training_jobs(), settings().runs_dir)  # a training's model will take it
        _act(lambda: record_model_event("model restored", restore_model(models_dir, pick, by=who.user_id,
                                                                        name_held=held)),
             f"Restored {entry.name}; it is selectable in the sidebar again.")
    # Keyed by the folder: a "yes" ticked for one model does not carry over to the next one picked.
    sure = delete.checkbox(f"Yes, delete it for good ({size_text(entry.size_bytes)})", key=f"removed_sure_{pick}")
    if delete.button("Delete for good", key="removed_delete", icon=":material/delete_forever:", disabled=not sure,
                     use_container_width=True):
        def delete() -> None:
            # The removed copy's hash, read before it goes: models_dir/NAME may be another model of its name now.
            sha = card_file_hash(models_dir / REMOVED / pick / f"{entry.name}.keras")
            delete_removed(models_dir, pick, by=who.user_id)
            record_model_event("model deleted for good", models_dir / f"{entry.name}.keras", sha)

        _act(delete, f"Deleted {entry.name} for good.")


def _act(action, done: str) -> None:
    try:
        action()
        st.toast(md_literal(done))
        st.rerun()
    except BrainclfError as e:
        st.error(public(e))
