"""A site run: one model, one site folder, the steps validate → calibrate → adapt, and what each produced.

RUN_DIR/site.json holds the site, the model it started from (name, version, file hash), the split (relative
paths) and each finished step's figures; every step reads the split from there, so the held-out part stays the
same slices whatever runs after. Calibrate writes a site profile of the model (the same weights, the site's
temperature, refer thresholds and OOD guard); adapt writes a fine-tuned model with its own. Both go into the
models folder under new names: nothing overwrites a model that is there.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data import Sample
from ..errors import BrainclfError, DataError
from ..evaluation.manifest import read_manifest
from ..files import write_json_atomically
from ..inference.predict import Predictor
from ..model.card import file_sha256, load_model, read_card
from ..model.model_files import staged_model
from ..presentation.wording import plural
from ..scoring.operating_point import DEFAULT_TARGET
from ..training.config import ProgressHook
from .config import ADAPT_STATE
from .measure import (
    SliceProgress,
    check_step_memory,
    fit_site_calibration,
    fit_site_guard,
    kaggle_check,
    validate,
    with_calibration,
)
from .naming import free_default_name, new_name, publish_named
from .own_data import kaggle_test_samples, learnt_from, replay_or_refuse, replay_samples
from .profile import site_card
from .split import SiteSplit, check_adaptable, check_calibratable, saved_split, split_site

STATE = "site.json"
# phase(a step's part in words, saving: whether it is the part that saves) -> that part's progress callback
Phases = Callable[..., SliceProgress]


def _no_phase(words: str, saving: bool = False) -> SliceProgress:
    return lambda done, total: None
CHOSEN_ON = {True: "mean calibrated loss on the site's calibration part and the model's own validation images",
             False: "calibrated loss on the site's calibration part"}


def site_run_dir(base: str | Path, site: str, model_path: str | Path) -> Path:
    """A site run's folder under `base`: one per site and starting model, nested so that no two pairings share one
    ("clinic-a" + "default" and "clinic" + "a-default" did as "clinic-a-default"); an older flat one is found."""
    nested, flat = Path(base) / site / Path(model_path).stem, Path(base) / f"{site}-{Path(model_path).stem}"
    return flat if (flat / STATE).is_file() and not (nested / STATE).is_file() else nested


@dataclass
class SiteRun:
    run_dir: Path
    state: dict
    split: SiteSplit
    made_by: dict = field(default_factory=dict)  # who runs this step in the app: its model's card names them

    @classmethod
    def open(cls, run_dir: str | Path, site_root: str | Path, site: str, model_path: str | Path,
             progress=None, data_root: str | Path | None = None) -> SiteRun:
        """The run in `run_dir` (its saved split), or a new one that splits the site folder, leaving out the
        slices the model learnt from (its primary training images are looked for under `data_root`).

        Raises:
            DataError: the folder is unusable or too small, or the run was started for another model, site or
                folder.
        """
        run_dir = Path(run_dir)
        card = read_card(model_path)
        read_manifest(site_root)  # new or resumed: one that cannot be read is refused now, not after a step's work
        path = run_dir / STATE
        root = str(Path(site_root).resolve())
        if path.is_file():
            state = saved_state(run_dir)
            if not isinstance(state, dict) or not {"site", "model", "split", "groups"} <= set(state):
                raise DataError(f"This site run's record ({STATE} in {run_dir.name}) cannot be read (cut short or "
                                "edited): move that folder aside, or give another run folder, to start anew.")
            _check_pairing(state, site, root, card)
            state["model"]["path"] = str(Path(model_path).resolve())  # the same bytes (checked), wherever run from
            return cls(run_dir, state, saved_split(site_root, site, {**state["split"], "groups": state["groups"]},
                                                   (state.get("fingerprint") or {}).get("content_sha256")))
        split = split_site(site_root, site, progress, exclude=lambda s: learnt_from(card, s, site_root, data_root))
        state = {"site": site, "root_name": Path(site_root).name, "root": root, "model": _model_ref(card, model_path),
                 "split": split.to_dict(), "groups": split.groups, "fingerprint": split.fingerprint, "steps": {}}
        run = cls(run_dir, state, split)
        run.save()
        return run

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.run_dir / STATE, self.state)

    def step(self, name: str) -> dict | None:
        return self.state["steps"].get(name)

    def _book(self, name: str, result: dict) -> dict:
        self.state["steps"][name] = {**result, "by": self.made_by} if self.made_by else result
        self.save()
        return result

    # -- the steps ------------------------------------------------------------------------------------------

    def validate(self, predictor, phase: Phases | None = None) -> dict:
        """The starting model on the held-out part, as it is (its own calibration and refer rule). `phase` as
        for calibrate."""
        phase = phase or _no_phase
        n = len(self.split.parts["heldout"])
        report = validate(predictor, self.split, self._membership("held-out"),
                          phase(f"Validating {predictor.card.name} on {plural(n, 'held-out slice')}"))
        phase("Saving the figures", True)(1, 1)
        return self._book("validate", report)

    def calibrate(self, predictor, target: float = DEFAULT_TARGET, models_dir: str | Path = "models",
                  name: str | None = None, data_root: str | Path | None = None,
                  confidence: float | None = None, phase: Phases | None = None,
                  runs_root: str | Path | None = None) -> dict:
        """Site temperature, refer thresholds (for `target`, reached by the lower bound at `confidence` when given)
        and OOD guard fitted on the adaptation part; the held-out figures with them; a site profile (same
        weights) saved as models_dir/NAME. `phase(words, saving=False)` gives each part's progress callback: one
        that raises stops the step; the saving part's is called once, last, before anything is saved. A name an
        unfinished training under `runs_root` will take is neither given nor chosen."""
        phase = phase or _no_phase
        check_calibratable(self.split)
        if name:
            new_name(models_dir, name, runs_root)  # a taken name refused before the work, not after it
        adaptation = self.split.adaptation
        cal = fit_site_calibration(predictor, adaptation, self.state["site"], target, fitted_on=(
            f"the adaptation part of site {self.state['site']} ({len(adaptation)} slices)"), confidence=confidence,
            progress=phase(f"Fitting the site's temperature and refer rule on {plural(len(adaptation), 'slice')}"))
        replay = replay_samples(predictor.card, data_root)
        guard = fit_site_guard(predictor, self.split.parts["tune"] + replay[:len(self.split.parts["tune"])],
                               self.split.parts["calibration"], progress=phase("Fitting the site's OOD guard"))
        profiled = with_calibration(predictor, cal, guard)
        report = validate(profiled, self.split, self._membership("held-out"), phase(
            f"Validating the site profile on {plural(len(self.split.parts['heldout']), 'held-out slice')}"))
        kaggle = kaggle_test_samples(data_root)
        kaggle_report = kaggle_check(profiled, kaggle, data_root, phase(
            f"Reading the model's own test set ({plural(len(kaggle), 'image')}) with the site profile")) \
            if kaggle else None
        free_name = self._free_name(models_dir, "", runs_root)
        phase(f"Saving the site profile {name or free_name()}", True)(1, 1)  # unless another writer takes it first
        start = self._model_path()
        with staged_model(Path(models_dir) / "site-profile.keras", start.stat().st_size) as (staged, staged_card):
            shutil.copyfile(start, staged)
            saved = publish_named(models_dir, name, free_name, staged, staged_card,
                                  lambda chosen: site_card(profiled.card, chosen, staged, self, report,
                                                           adapted=False, target=target, kaggle_test=kaggle_report),
                                  runs_root)
        return self._book("calibrate", {**_saved(*saved), "target": target, "heldout": report, "calibration": cal})

    def adapt(self, cfg, data_root: str | Path | None, target: float = DEFAULT_TARGET,
              models_dir: str | Path = "models", name: str | None = None, progress: ProgressHook | None = None,
              cancel: threading.Event | None = None, confidence: float | None = None,
              runs_root: str | Path | None = None) -> dict:
        """Fine-tune from the starting model on the tuning part with replay (brainclf.site.adapt), then
        calibrate it on the calibration part, validate it on the held-out part, check Kaggle `Testing` before
        and after, and save it as models_dir/NAME (not a name an unfinished training under `runs_root` will
        take)."""
        from .adapt import fine_tune  # TensorFlow

        started = time.monotonic()
        check_adaptable(self.split)
        if name:
            new_name(models_dir, name, runs_root)  # a taken name refused before the fine-tuning, not after it
        base_model, base_card = load_model(self._model_path())
        check_step_memory(base_model, base_card.name, cfg.batch_size, training=True)
        replay = replay_or_refuse(base_card, data_root, cfg)
        tune, calib = self.split.parts["tune"], self.split.parts["calibration"]
        kaggle = kaggle_test_samples(data_root)
        kept = replay_samples(base_card, data_root, part="val")
        model, state = fine_tune(base_model, tune, calib, replay, base_card.contract, cfg, self.run_dir / "adapt",
                                 progress, cancel, kept=kept)
        with staged_model(Path(models_dir) / "site-adapted.keras") as (staged, staged_card):
            model.save(staged)
            adapted, cal, report, kaggle_after = self._check_adapted(model, _with_hash(base_card, staged), replay,
                                                                     target, confidence, kaggle, data_root)
            # The starting model in the mode the adapted one runs, so the forgetting check compares like with like
            # (from its file: fine_tune trained the copy loaded above; its card's figure where it has one).
            before = _kaggle_before(Predictor(*load_model(self._model_path()), tta=adapted.tta), kaggle,
                                    data_root) if kaggle else None
            result = {"target": target, "heldout": report, "calibration": cal,
                      "kaggle_test": {"before": before, "after": _accuracy(kaggle_after)},
                      "adapt": {"config": state.config, "epochs_run": state.epoch, "best_epoch": state.best_epoch,
                                "seconds": round(state.seconds, 1), "history": state.history,
                                "replay_images": len(replay), "tune_slices": len(tune),
                                "own_validation_images": len(kept), "chosen_on": CHOSEN_ON[bool(kept)]}}
            result["adapt"]["step_seconds"] = round(time.monotonic() - started, 1)  # this call, checks included

            def card_named(chosen: str):
                result.update(model=str(Path(models_dir) / f"{chosen}.keras"), name=chosen)
                return site_card(adapted.card, chosen, staged, self, report, adapted=True, target=target,
                                 result=result, kaggle_test=kaggle_after)

            saved = publish_named(models_dir, name, self._free_name(models_dir, "-adapted", runs_root), staged,
                                  staged_card, card_named, runs_root)
        return self._book("adapt", {**result, **_saved(*saved)})

    def _check_adapted(self, model, card, replay, target: float, confidence, kaggle, data_root):
        """The adapted model calibrated on the calibration part (never fine-tuned on), with its site OOD guard;
        (that predictor, its calibration, its held-out report, its Kaggle `Testing` check or None)."""
        tune, calib = self.split.parts["tune"], self.split.parts["calibration"]
        adapted = Predictor(model, card)
        cal = fit_site_calibration(adapted, calib, self.state["site"], target, fitted_on=(
            f"the calibration part of site {self.state['site']} ({len(calib)} slices, not fine-tuned on)"),
            confidence=confidence)
        guard = fit_site_guard(adapted, tune + replay[:len(tune)], calib)
        adapted = with_calibration(adapted, cal, guard)
        report = validate(adapted, self.split, self._membership("held-out", adapted=True))
        return adapted, cal, report, kaggle_check(adapted, kaggle, data_root) if kaggle else None

    # -- helpers --------------------------------------------------------------------------------------------

    def _model_path(self) -> Path:
        path = Path(self.state["model"]["path"])
        if not path.is_file() or file_sha256(path) != self.state["model"]["sha256"]:
            raise BrainclfError(f"Model {self.state['model']['name']} is no longer the file this site run started "
                                "from: start a new site run.")
        return path

    def _free_name(self, models_dir: str | Path, suffix: str, runs_root: str | Path | None) -> Callable[[], str]:
        return lambda: free_default_name(models_dir, self.state["site"], self.state["model"]["name"], suffix,
                                         runs_root)

    def _membership(self, part: str, adapted: bool = False) -> str:
        n = len(self.split.parts["heldout"])
        used = "fine-tuning, calibration or the epoch choice" if adapted else "calibration"
        return (f"{part} case groups of site {self.state['site']} ({n} slices): never used for {used}")


def _accuracy(report: dict | None) -> dict | None:
    return {"n": report["n"], "accuracy": report.get("accuracy"), "tta": bool(report.get("tta"))} if report else None


def _kaggle_before(predictor, kaggle: list[Sample], data_root) -> dict:
    """The starting model on Kaggle `Testing`: its card's own figure when that was measured on these very files
    the way the model runs now (the card lists each file it read), else measured here."""
    card = predictor.card
    test = card.metrics.get("test_tta" if predictor.tta else "test") or {}
    measured = {str(r.get("path")) for r in (card.test_predictions_tta if predictor.tta else card.test_predictions)}
    try:
        here = {Path(s.path).relative_to(data_root).as_posix() for s in kaggle}
    except ValueError:
        here = set()
    if test.get("accuracy") is not None and test.get("n") == len(kaggle) and measured == here \
            and bool(test.get("tta")) == predictor.tta:
        return {**_accuracy(test), "from": "the model's card"}
    return _accuracy(kaggle_check(predictor, kaggle, data_root))


def _saved(out: Path, card) -> dict:
    """What a step's result says of the model it saved (`card`: as staged): where, its name, version and file hash
    (what a go-live report certifies; a redone step saves under SITE-MODEL-2, -3, …)."""
    return {"model": str(out), "name": out.stem, "version": card.version, "sha256": card.file_sha256}


def _model_ref(card, model_path) -> dict:
    return {"name": card.name, "version": card.version, "sha256": card.file_sha256,
            "path": str(Path(model_path).resolve())}  # a later step may run from another folder


def _check_pairing(state: dict, site: str, root: str, card) -> None:
    """Refuse a run opened for another site, folder or model (by file hash), saying which differs."""
    model = state["model"]
    differs = [f"site {state['site']}, not {site}" if state["site"] != site else "",
               f"folder {state['root_name']}, not {Path(root).name}" if state.get("root", root) != root else "",
               f"model {model['name']} {model.get('version', '')} (file {str(model['sha256'])[:12]}), not "
               f"{card.name} {card.version} (file {str(card.file_sha256)[:12]})"
               if model["sha256"] != card.file_sha256 else ""]
    if any(differs):  # a new pairing: another site name (the CLI: or another --run-dir)
        raise DataError(f"This site run was started for {'; '.join(filter(None, differs))}: give another site name.")


def _with_hash(card, path: Path):
    return replace(card, file_sha256=file_sha256(path))


def saved_state(run_dir: Path) -> dict | None:
    """A site run's state (what the steps measured), or None when it has none yet or it cannot be read."""
    try:
        return json.loads((Path(run_dir) / STATE).read_text())
    except (OSError, ValueError):
        return None


def adaptation_saved(run_dir: Path) -> bool:
    """Whether an adaptation of this run finished an epoch (a resume point)."""
    return (Path(run_dir) / "adapt" / ADAPT_STATE).is_file()
