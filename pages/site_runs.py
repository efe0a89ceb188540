"""The Model page's list of a user's kept site runs (brainclf.site.kept): what each holds and takes on disk, and
deleting one when its owner is done with it, or wants its site name for another folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from brainclf.errors import BrainclfError
from brainclf.escaping import csv_row
from brainclf.input.limits import size_text
from brainclf.presentation import count
from brainclf.site.kept import delete_site_run, kept_site_runs
from pages.common import public


def kept_runs_section(who, base: Path, jobs) -> None:
    """`base`: this user's site folder; `jobs`: the app's jobs (the run a step is running on is not deleted)."""
    runs = kept_site_runs(base)
    if not runs:
        return
    with st.expander(f"Your site runs ({count(len(runs))}, {size_text(sum(r.size_bytes for r in runs))})"):
        st.dataframe(pd.DataFrame([csv_row({"site": r.site, "starting model": r.model,
                                            "steps done": ", ".join(r.steps) or "none", "size": size_text(r.size_bytes),
                                            "last changed": r.changed_at.strftime("%Y-%m-%d %H:%M:%S")})
                                   for r in runs]), hide_index=True)
        by_folder = {r.folder: r for r in runs}
        pick = st.selectbox("Site run", list(by_folder), key="site_kept_pick",
                            format_func=lambda f: f"{f} ({by_folder[f].site} from {by_folder[f].model})")
        st.caption("Deleting a run takes its split, its figures and an adaptation's saved epochs (no resume after "
                   "it); the models it saved stay in the model picker with their cards.")
        # Keyed by the run: a "yes" ticked for one does not carry over to the next one picked.
        sure = st.checkbox(f"Yes, delete this run ({size_text(by_folder[pick].size_bytes)})",
                           key=f"site_kept_sure_{pick}")
        if st.button("Delete run", key="site_kept_delete", icon=":material/delete:", disabled=not sure):
            try:
                jobs.while_no_job_starts(lambda running: delete_site_run(base, pick, running=running, by=who.user_id))
                st.toast("Site run deleted.")
                st.rerun()
            except BrainclfError as e:
                st.error(public(e))
