"""Sign-in, roles and server settings in the app (AppTest on the bundled models).

Server mode is an [auth] section in the secrets (AppTest.secrets) and a signed-in user (AppTest.user); roles
come from a brainclf.toml named by $BRAINCLF_SETTINGS. The real sign-in through an OIDC provider is
tests/test_auth_e2e.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import md_plain

from brainclf.serving import JobStatus

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "a-test-cookie-secret-0123456789",
        "client_id": "brainclf", "client_secret": "not-a-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
USERS = {"clinician": "doc@clinic.example", "researcher": "res@clinic.example", "admin": "boss@clinic.example"}
PATH_WORDS = re.compile(r"folder|file|path|directory|dir\b", re.IGNORECASE)


@pytest.fixture
def server_settings(tmp_path, monkeypatch, synthetic_dataset):
    toml = tmp_path / "brainclf.toml"
    toml.write_text(f'[data]\nbrain-mri = "{synthetic_dataset}"\n\n'
                    + "".join(f'[roles.{role}]\nemails = ["{email}"]\n' for role, email in USERS.items()))
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    monkeypatch.setenv("BRAINCLF_AUDIT_DIR", str(tmp_path / "audit"))
    return toml


@pytest.fixture
def local_data(monkeypatch, synthetic_dataset, tmp_path):
    monkeypatch.setenv("BRAINCLF_DATA", str(synthetic_dataset))
    monkeypatch.setenv("BRAINCLF_AUDIT_DIR", str(tmp_path / "audit"))
    return synthetic_dataset


def app_as(user: dict | None) -> AppTest:
    """The app in server mode with `user` as st.user (None: not signed in)."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = AUTH
    at.user = user or {"is_logged_in": False}
    return at


def signed_in(role: str) -> dict:
    return {"is_logged_in": True, "email": USERS[role], "email_verified": True, "sub": f"sub-{role}",
            "name": role.title()}


def pages_of(at: AppTest) -> list[str]:
    """The pages st.navigation registered for this session."""
    return sorted(Path(str(i["script_path"])).stem for i in at._registered_pages.values() if i.get("script_path"))


def run_page(at: AppTest, page: str) -> AppTest:
    """Home (app.py's navigation and sidebar), then `page`. AppTest runs a switched-to page in Streamlit's
    legacy pages/ mode: Evaluation then runs without app.py, so its sidebar and navigation are Home's."""
    at.run()
    at.navigation_pages = pages_of(at)
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---- local mode -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["home", "predict", "evaluation", "model"])
def test_no_widget_takes_a_server_path(local_data, page):
    """Issue #13: the sidebar's "Data folder" and "Audit log file", Evaluation's "Folder of class sub-folders"
    and the Model page's data folder were text boxes taking any server path."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert at.selectbox(key="data_root").options == ["brain-mri"]  # the dataset, by name
    run_page(at, page)
    if page == "evaluation":
        at.radio(key="eval_source").set_value("Re-evaluate on a folder").run()
    boxes = [t.label for t in at.text_input if PATH_WORDS.search(t.label)]
    assert boxes == [], boxes
    if page == "evaluation":
        assert at.selectbox(key="eval_folder").options == ["brain-mri", "brain-mri/Testing", "brain-mri/Training"]
        assert at.selectbox(key="eval_folder").value == "brain-mri/Testing"
    if page == "model":
        assert at.selectbox(key="train_data").options == ["brain-mri"]
    # A widget's key travels to the browser inside its element id: none may hold a server path.
    assert not [k for k in at.session_state.keys() if str(REPO) in str(k) or str(local_data) in str(k)]


def test_local_mode_says_so_in_the_sidebar_and_has_every_feature(local_data):
    # The sidebar is app.py's (Home's run): the Model page, switched to, runs on its own under AppTest.
    at = run_page(AppTest.from_file(APP, default_timeout=120), "home")
    assert any("Local mode: no sign-in" in i.value for i in at.sidebar.info)
    assert at.navigation_pages == ["evaluation", "home", "model", "predict"]
    assert at.toggle(key="audit") is not None  # audit settings
    assert not at.sidebar.button  # no sign-out button
    at.switch_page("pages/model.py").run()
    assert "Remove" in [b.label for b in at.button]  # remove models
    assert at.button(key="site_validate") is not None  # site runs


def test_local_mode_refuses_another_address_any_host_and_a_role_table(local_data, tmp_path, monkeypatch):
    from streamlit import config

    old = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
    finally:
        config.set_option("server.address", old)
    assert not at.exception and not at.title
    assert any("serves 127.0.0.1 only" in e.value for e in at.error)
    for hosts in ([], ["*"], ["localhost", "evil.example"]):  # DNS rebinding: any page naming this machine
        old = config.get_option("server.allowedHosts")
        config.set_option("server.allowedHosts", hosts)
        try:
            at = AppTest.from_file(APP, default_timeout=120)
            at.run()
        finally:
            config.set_option("server.allowedHosts", old)
        assert any("opened as localhost or 127.0.0.1 only" in e.value for e in at.error) and not at.title, hosts
    toml = tmp_path / "roles.toml"
    toml.write_text('[roles.admin]\nemails = ["boss@clinic.example"]\n')
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert any("sign-in is not configured" in e.value for e in at.error) and not at.title


# ---- server mode: sign-in and roles -------------------------------------------------------------------------
def test_signed_out_users_see_only_the_sign_in_page(server_settings):
    at = app_as(None)
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.selectbox and not at.sidebar.info  # no model picker, no local-mode note
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/predict.py")


def test_a_user_without_a_role_is_told_so(server_settings):
    at = app_as({"is_logged_in": True, "email": "stranger@elsewhere.example", "sub": "x"})
    at.run()
    assert any("gives your account no role" in w.value for w in at.warning)
    assert [b.label for b in at.button] == ["Sign out"] and not at.selectbox


def test_clinician_reads_results_but_cannot_re_evaluate_or_open_the_model_page(server_settings):
    at = run_page(app_as(signed_in("clinician")), "home")
    assert at.navigation_pages == ["evaluation", "home", "predict"]
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/model.py")
    assert not [t for t in at.toggle if t.key == "audit"]
    assert any("Audit log: **off** (set by an admin)" in c.value for c in at.sidebar.caption)
    assert any("Signed in as **Clinician** (clinician)" in c.value for c in at.sidebar.caption)
    assert "Sign out" in [b.label for b in at.sidebar.button]
    at.switch_page("pages/evaluation.py").run()
    assert not at.exception
    assert not at.radio and "eval_source" not in at.session_state  # read-only: the card's results
    assert list(at.table[0].value["measure"])[:2] == ["Accuracy", "Loss (cross-entropy)"]  # the headline table
    # The feature map runs the model over the dataset's images, as a re-evaluation does: not a clinician's.
    assert "fmap" not in [b.key for b in at.button]
    assert any("researchers and admins can" in c.value for c in at.caption)


def test_researcher_re_evaluates_trains_and_uploads_but_does_not_remove(server_settings):
    at = run_page(app_as(signed_in("researcher")), "model")
    assert at.navigation_pages == ["evaluation", "home", "model", "predict"]
    expanders = [e.label for e in at.expander]
    assert any("Upload a model" in e for e in expanders) and not any("Remove" in e for e in expanders)
    assert "Start training" in [b.label for b in at.button]
    assert at.selectbox(key="train_data").options == ["brain-mri"]
    assert not [t for t in at.toggle if t.key == "audit"]
    at.switch_page("pages/evaluation.py").run()
    assert at.radio(key="eval_source").options[1] == "Re-evaluate on a folder"
    assert "fmap" in [b.key for b in at.button]


def test_admin_also_removes_models_and_sets_the_audit_log(server_settings):
    at = run_page(app_as(signed_in("admin")), "home")
    assert at.toggle(key="audit").value is False  # in app.py's sidebar
    at.switch_page("pages/model.py").run()
    assert any("Remove a model" in e.label for e in at.expander)


@pytest.fixture
def foreign_job():
    """A training started by someone else, in the app's process-wide job list."""
    from pages.common import training_jobs

    jobs = training_jobs()
    before = jobs.status
    yield jobs
    jobs.status = before


def test_only_the_owner_or_an_admin_sees_cancel(server_settings, foreign_job):
    foreign_job.status = JobStatus(name="theirs", state="running", owner="sub-other", owner_label="Other")
    at = run_page(app_as(signed_in("researcher")), "model")
    assert "Cancel training" not in [b.label for b in at.button]
    assert any("Only the person who started this training" in c.value for c in at.caption)
    at = run_page(app_as(signed_in("admin")), "model")
    assert "Cancel training" in [b.label for b in at.button]


def test_a_failed_training_shows_its_reason_to_the_owner_only(server_settings, foreign_job):
    foreign_job.status = JobStatus(name="theirs", state="failed", owner="sub:sub-researcher", owner_label="R",
                                   error=f"{server_settings.parent}/runs/theirs holds a run with a different config")
    at = run_page(app_as(signed_in("researcher")), "model")  # the owner
    (message,) = [e.value for e in at.error if "theirs" in e.value]
    assert "different config" in message and str(server_settings.parent) not in message
    foreign_job.status = JobStatus(name="theirs", state="failed", owner="sub:someone", owner_label="Someone",
                                   error="secret reason")
    at = run_page(app_as(signed_in("researcher")), "model")
    (message,) = [e.value for e in at.error if "theirs" in e.value]
    assert "secret reason" not in message and "started by Someone" in message


def test_a_failed_site_step_shows_its_reason_to_the_owner_only(server_settings, foreign_job):
    foreign_job.status = JobStatus(name="clinicA: validate", state="failed", owner="sub:someone",
                                   owner_label="Someone", error="secret reason", request={"kind": "site"})
    at = run_page(app_as(signed_in("researcher")), "model")
    (message,) = [e.value for e in at.error if "clinicA" in e.value]
    assert "secret reason" not in message and "started by Someone" in message
    at = run_page(app_as(signed_in("admin")), "model")
    assert any("secret reason" in e.value for e in at.error)


def test_every_site_step_offers_cancel_to_whoever_started_it(server_settings, foreign_job):
    for step in ("validate", "calibrate", "adapt"):
        for owner, offered in (("sub:sub-researcher", True), ("sub:someone-else", False)):
            foreign_job.status = JobStatus(name=f"clinicA: {step}", state="running", owner=owner,
                                           owner_label="R", request={"kind": "site", "step": step})
            at = run_page(app_as(signed_in("researcher")), "model")
            assert (f"site_cancel_{foreign_job.status.started}" in [b.key for b in at.button]) is offered, \
                (step, owner)


def test_a_cancel_refused_while_a_step_saves_is_said_in_a_toast(server_settings, foreign_job):
    from brainclf.training import TrainProgress

    foreign_job.status = JobStatus(name="clinicA: validate", state="running", owner="sub:sub-researcher",
                                   owner_label="R", request={"kind": "site", "step": "validate"},
                                   progress=TrainProgress("evaluating", message="Saving the figures"))
    at = run_page(app_as(signed_in("researcher")), "model")
    at.button(key=f"site_cancel_{foreign_job.status.started}").click().run()
    assert not at.exception
    assert any("cannot be cancelled now" in t.value for t in at.toast), [t.value for t in at.toast]
    assert not foreign_job._cancel.is_set()


def test_the_training_panel_shows_the_running_epoch_one_based_and_the_time_left(server_settings, foreign_job):
    from brainclf.training import TrainProgress

    # 5 of 40 batches of the first epoch in 10 s of training, after 90 s of preparation: ~80 s per epoch.
    progress = TrainProgress("training", epoch=0, epochs=30, batch=5, batches=40, elapsed_s=100.0,
                             train_elapsed_s=10.0)
    foreign_job.status = JobStatus(name="mine", state="running", owner="sub:sub-researcher", progress=progress)
    at = run_page(app_as(signed_in("researcher")), "model")
    (bar,) = at.progress
    assert bar.proto.text.startswith("Training **mine**: epoch 1/30, batch 5/40")  # Markdown-escaped: public()
    assert f"\\~{progress.eta_s():.0f}s left" in bar.proto.text
    assert progress.eta_s() == pytest.approx(2390.0 + 2 * 80)  # the final evaluation counts as two epochs
    assert bar.proto.value == int(progress.fraction_done() * 100)
    foreign_job.status.progress = TrainProgress("preparing", message="Loading 40 images", fraction=0.4)
    at = run_page(app_as(signed_in("researcher")), "model")
    assert at.progress[0].proto.text == "Preparing **mine**: Loading 40 images \\(40 %\\)"
    assert at.progress[0].proto.value == 40


@pytest.fixture
def cancelled_job(foreign_job, tmp_path, monkeypatch):
    """A cancelled training of sub:sub-researcher whose run dir holds a state; resume() only records its caller."""
    from brainclf.training import TrainConfig, TrainProgress
    from brainclf.training.state import RunState

    config = TrainConfig(image_size=32, epochs=3, batch_size=8)
    run_dir = tmp_path / "runs" / "mine"
    run_dir.mkdir(parents=True)
    RunState(config=config.to_dict(), contract=config.contract().to_dict(), train_files=[], val_files=[],
             test_files=[], fingerprint={}, started="", epoch=1).save(run_dir)
    foreign_job.status = JobStatus(
        name="mine", state="cancelled", owner="sub:sub-researcher", owner_label="R", run_dir=run_dir,
        request={"config": config, "data": tmp_path, "models_dir": tmp_path / "models"},
        progress=TrainProgress("cancelled", epoch=1, epochs=3),
        error=f"Training cancelled after 1 epochs (resumable from {run_dir}).")
    calls = []
    monkeypatch.setattr(foreign_job, "resume", lambda user_id, admin=False, started=None: calls.append(
        (user_id, admin, started)))
    return foreign_job, calls


def test_the_owner_resumes_a_cancelled_training_from_the_model_page(server_settings, cancelled_job, monkeypatch):
    jobs, calls = cancelled_job
    at = run_page(app_as(signed_in("researcher")), "model")
    (message,) = [w.value for w in at.warning if "mine" in w.value]
    assert message == "Training mine was cancelled after 1 of 3 epochs."
    assert "Resume training mine" in [b.label for b in at.button]
    assert not any(str(jobs.status.run_dir) in e.value for e in (*at.warning, *at.error, *at.caption))
    # AppTest starts every run of a switched-to page in Streamlit's legacy pages/ mode, and route_through_app's
    # reroute would drop the click; a real server reroutes only its first request.
    import pages.common

    monkeypatch.setattr(pages.common, "route_through_app", lambda once_per_session=False: None)
    at.button(key=f"resume_train_{jobs.status.started}").click().run()
    assert calls == [("sub:sub-researcher", False, jobs.status.started)]  # the job the page showed, by its start


def test_only_the_owner_or_an_admin_sees_resume_and_only_with_a_state(server_settings, cancelled_job, tmp_path):
    jobs, _ = cancelled_job
    at = run_page(app_as(signed_in("admin")), "model")
    assert "Resume training mine" in [b.label for b in at.button]
    jobs.status.owner = "sub:someone-else"
    at = run_page(app_as(signed_in("researcher")), "model")
    assert "Resume training mine" not in [b.label for b in at.button]
    jobs.status.owner = "sub:sub-researcher"
    (jobs.status.run_dir / "state.json").unlink()  # nothing to go on from
    at = run_page(app_as(signed_in("researcher")), "model")
    assert "Resume training mine" not in [b.label for b in at.button]


def test_a_user_without_a_role_gets_no_upload_box_on_predict(server_settings):
    """Issue #25: uploads are for roles that may predict; a role-less session must not even see the uploader."""
    user = {"is_logged_in": True, "email": "stranger@elsewhere.example", "sub": "sub-x", "name": "X"}
    at = app_as(user)
    at.run()
    assert pages_of(at) == [] and not at.file_uploader  # app.py routes the session to "No access" only
    page = AppTest.from_file(str(REPO / "pages" / "predict.py"), default_timeout=120)  # the page on its own
    page.secrets["auth"], page.user = AUTH, user
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert not page.file_uploader
    assert any("Your role does not give access" in e.value for e in page.error)


def test_one_job_at_a_time_and_each_panel_says_which_one_holds_the_slot(server_settings, foreign_job):
    foreign_job.status = JobStatus(name="clinic: adapt", state="running", owner="sub-other", owner_label="Other",
                                   request={"kind": "site"})
    at = run_page(app_as(signed_in("researcher")), "model")
    assert any("A site step is running (clinic: adapt, started by Other)" in md_plain(c.value) for c in at.caption)
    foreign_job.status = JobStatus(name="theirs", state="running", owner="sub-other", owner_label="Other")
    at = run_page(app_as(signed_in("researcher")), "model")
    assert any("A training is running (theirs, started by Other): site steps can start once it ends"
               in md_plain(c.value) for c in at.caption)
    assert at.button(key="site_validate").disabled


def test_a_cancel_drawn_for_a_job_that_has_ended_never_reaches_the_next_one(server_settings, foreign_job):
    """A review: the panel redraws from the jobs' current status, so a button keyed alike for every job would
    pass a click on the ended job's Cancel to whichever job had started since."""
    foreign_job.status = JobStatus(name="first", state="running", owner="sub:sub-researcher", owner_label="R",
                                   started=100.0)
    at = run_page(app_as(signed_in("researcher")), "model")
    drawn = at.button(key="cancel_train_100.0")
    foreign_job.status = JobStatus(name="second", state="running", owner="sub:sub-researcher", owner_label="R",
                                   started=200.0)
    drawn.click().run()
    assert not at.exception and not foreign_job._cancel.is_set()
    assert "cancel_train_200.0" in [b.key for b in at.button]  # the new job's own button, not clicked


def test_the_whole_page_is_redrawn_once_when_a_training_it_saw_running_ends(server_settings, foreign_job):
    """The panel redraws itself every second; the rest of the page (Start training, disabled while a job runs;
    the models table; the picker) followed only at the next click."""
    running = JobStatus(name="mine", state="running", owner="sub:sub-researcher", owner_label="R")
    foreign_job.status = running
    at = run_page(app_as(signed_in("researcher")), "model")
    assert at.session_state["job_panel_seen_running"] == running.started
    assert next(b for b in at.button if b.label == "Start training").disabled
    foreign_job.status = JobStatus(name="mine", state="done", owner="sub:sub-researcher", owner_label="R",
                                   started=running.started)
    at.run()
    assert not at.exception
    assert "job_panel_seen_running" not in at.session_state  # redrawn once, then left alone
    assert not next(b for b in at.button if b.label == "Start training").disabled
