"""A site step as the app's background job (brainclf.serving.jobs), in a process of its own: its body opens the
run, runs the step and says how far it is; a cancel stops validate and calibrate between chunks of slices (nothing
saved yet) and adapt after its batch (its epochs kept for a resume)."""

from __future__ import annotations

import threading
from pathlib import Path

from ..inference.predict import Predictor
from ..training.config import ProgressHook, TrainingCancelled, TrainProgress
from ..training.isolated import run_isolated
from .config import AdaptConfig
from .measure import SliceProgress, check_step_memory
from .run import Phases, SiteRun
from .step_lock import one_step_at_a_time

INFERENCE_BATCH = 64  # Predictor.raw_probs_and_features' batch


def phases(hook: ProgressHook, cancel: threading.Event | None) -> Phases:
    """phase(words, saving=False) -> the progress callback of one part of a step: it reports `words` with the
    share of the part's slices done, and raises TrainingCancelled once `cancel` is set (checked between chunks of
    slices). The saving part reports stage "evaluating": from then on the app refuses a cancel, as it does in an
    adaptation's final checks, rather than accept one the step would no longer honour."""

    def phase(words: str, saving: bool = False) -> SliceProgress:
        def progress(done: int, total: int) -> None:
            if cancel is not None and cancel.is_set():
                raise TrainingCancelled(f"Cancelled while {words[:1].lower()}{words[1:]}; nothing of this step was "
                                        "saved: start it again to run it.")
            hook(TrainProgress("evaluating" if saving else "preparing", message=words,
                               fraction=done / total if total else 0.0))

        return progress

    return phase


def step_job(step: str, run_dir: Path, site_root: Path, site: str, model: Path, target: float, models_dir: Path,
             data_root: Path | None, confidence: float | None = None, runs_root: Path | None = None,
             made_by: dict | None = None):
    """One step as a background job's body, work(progress hook, cancel event) -> the saved model (or the run
    dir): run_step in a process of its own (training.isolated), so a step that outgrows the memory a job may use
    fails alone instead of taking the server down. `made_by`: who started it (brainclf.model.maker_record)."""
    args = (step, run_dir, site_root, site, model, target, models_dir, data_root, confidence, runs_root, made_by)

    def work(hook, cancel):
        return run_isolated(run_step, args, hook=hook, cancel=cancel, label=f"site step {step} of {site}")

    return work


def run_step(step: str, run_dir: Path, site_root: Path, site: str, model: Path, target: float, models_dir: Path,
             data_root: Path | None, confidence: float | None = None, runs_root: Path | None = None,
             made_by: dict | None = None, *, hook: ProgressHook, cancel: threading.Event | None):
    """One step in this process: open the run (its split) and run the step with an in-process model; its model
    never takes a name an unfinished training under `runs_root` (the app's runs folder) will take."""
    with one_step_at_a_time(run_dir):  # not beside a step of the same run elsewhere (the CLI, another app)
        phase = phases(hook, cancel)
        # Reading every slice (hashes) and grouping by case: progress, and a cancel between slices, on a big folder.
        run = SiteRun.open(run_dir, site_root, site, model, phase(f"Splitting the site's slices by case ({site})"),
                           data_root=data_root)
        run.made_by = dict(made_by or {})
        if step in ("validate", "calibrate"):
            predictor = Predictor.load(model)
            check_step_memory(predictor.model, predictor.card.name, INFERENCE_BATCH, training=False)
        if step == "validate":
            run.validate(predictor, phase)
            return run_dir
        if step == "calibrate":
            return Path(run.calibrate(predictor, target, models_dir, data_root=data_root, confidence=confidence,
                                      phase=phase, runs_root=runs_root)["model"])
        return Path(run.adapt(AdaptConfig(), data_root, target, models_dir, progress=hook, cancel=cancel,
                              confidence=confidence, runs_root=runs_root)["model"])
