"""Your hospital's scans: validate, calibrate and adapt a model on a site's own labelled slices before anyone
relies on it there.

    split.split_site      the site folder → tuning / calibration / held-out parts by case groups (refuses a
                          set too small to validate)
    run.SiteRun           the steps and what each produced (RUN_DIR/site.json): validate (held-out figures),
                          calibrate (site profile: temperature, refer thresholds, OOD guard), adapt (fine-tune
                          with replay, then calibrate), each saving a new model whose card says "validated at X"
    measure               the computations the steps share; profile: the site model's card
    own_data              the model's own data: replayed training images, the forgetting check's Testing
                          split, and which site slices it learnt from (left out of a site run)
    adapt.fine_tune       the fine-tuning itself (TensorFlow; resumable, cancellable)
    steps.step_job        a step as the app's background job: progress in slices, cancellable
    golive.site_report_pdf  the one-page go-live report
    naming                the names a step's models take; kept: a user's kept site runs, listed and deleted
    step_lock             one step at a time on a run folder, whoever starts it (app, another process, CLI)

Importing this package does not import TensorFlow (adapt does, when called).
"""

from .config import AdaptConfig
from .golive import site_report_pdf
from .own_data import kaggle_test_samples, learnt_from, replay_samples
from .run import SiteRun, adaptation_saved, saved_state, site_run_dir
from .split import MIN_GROUPS, MIN_GROUPS_PER_CLASS, MIN_SLICES, SiteSplit, check_site_name, split_site
from .steps import step_job

__all__ = ["AdaptConfig", "MIN_GROUPS", "MIN_GROUPS_PER_CLASS", "MIN_SLICES", "SiteRun", "SiteSplit", "check_site_name",
           "kaggle_test_samples", "learnt_from", "replay_samples", "site_report_pdf", "split_site", "adaptation_saved",
           "saved_state", "site_run_dir", "step_job"]
