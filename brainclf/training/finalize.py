"""finalize_model: a run's best checkpoint(s) become models_dir/<name>.keras (float32, no optimizer) and its
card: calibration (scoring.trust), OOD guard (inference.ood), faithfulness (evaluation.faithfulness),
validation and test metrics, and external validation on each extra source's held-out case groups."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.datasets import Sample, load_arrays
from ..data.sources import GROUPED_SINCE, SAME_CASE_THRESHOLD, Source
from ..errors import DataError, ModelError
from ..evaluation.evaluate import evaluate_samples
from ..evaluation.external import evaluate_external
from ..evaluation.faithfulness import measure_faithfulness
from ..inference.batch_predict import predict_samples
from ..inference.ood import fit_guard
from ..inference.predict import Predictor
from ..input.preprocess import InputContract
from ..model.architectures import build_model, ensemble_from_members, get_architecture, recalibrate_batchnorm
from ..model.card import ModelCard, file_sha256, library_versions, machine_description, read_card
from ..model.model_files import publish_model, staged_model
from ..scoring.operating_point import DEFAULT_TARGET
from ..scoring.trust import fit_calibration
from .config import TrainConfig
from .prepare import index_samples, stratified_subset
from .state import RunState

OOD_MAX_TRAIN = 6000  # training images whose features fit the OOD guard
FAITHFULNESS_N = 100  # test images of the Grad-CAM faithfulness checks
# The steps of finalize_model, in words, with their rough share of its time (for the progress bar): the model
# runs over validation twice, a training subset and validation once, 100 images many times, the test split twice.
STEPS = (("calibration and refer rule on validation", 0.30), ("OOD guard", 0.25), ("Grad-CAM faithfulness", 0.15),
         ("test metrics", 0.25), ("external validation", 0.05))


@dataclass
class _Run:
    """What finalisation reads from a run, derived from its state once: each step below takes it as it is."""

    run_dir: Path
    state: RunState
    root: Path
    sources: list[Source]
    config: TrainConfig
    contract: InputContract
    by_rel: dict[str, Sample]  # every sample of the primary dataset and the extra sources, by relative path
    train_s: list[Sample]
    val_s: list[Sample]
    test_s: list[Sample]

    @classmethod
    def of(cls, run_dir: Path, state: RunState, root: Path, sources: list[Source]) -> _Run:
        by_rel = index_samples(root, sources)
        train_s, val_s, test_s = ([by_rel[p] for p in files if p in by_rel]
                                  for files in (state.train_files, state.val_files, state.test_files))
        return cls(run_dir, state, root, sources, state.train_config(), InputContract.from_dict(state.contract),
                   by_rel, train_s, val_s, test_s)


def finalize_model(run_dir: Path, state: RunState, root: Path, name: str, models_dir: Path,
                   sources: list[Source] | None = None, progress: Callable[[float, str], None] | None = None) -> Path:
    """Best checkpoint → models_dir/<name>.keras (no optimizer state) + card with test metrics, and
    external validation on each extra source's held-out case groups; `progress(share done, step)` is called
    before each of the STEPS and once at the end. One pass: the run is read once (_Run), then each step adds
    its part to the card."""

    run = _Run.of(run_dir, state, root, list(sources or []))
    model = _inference_model(run)
    target = Path(models_dir) / f"{name}.keras"
    with staged_model(target) as (staged, staged_card):
        model.save(staged)
        _measure(model, _card(staged, model, run, name), run, root, progress).save(staged_card)
        try:  # claimed only now: a model another user added under this name meanwhile is not overwritten
            out = publish_model(staged, staged_card, target, replace=made_by_run(target, state))
        except ModelError as e:
            raise ModelError(f"{e} The run in {run_dir} is kept: remove or rename the other model and run the same "
                             "command again to save this one (it goes straight to the final evaluation).") from None
    if state.published is not None:  # recorded: a run whose model is saved no longer offers a resume
        state.published = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        state.save(run_dir)
    return out


def made_by_run(target: Path, state: RunState) -> bool:
    """Whether TARGET (an existing model) is this run's own, from an earlier finalisation or the same command
    re-run on the same data (same config and data fingerprint): only then may the run replace it."""
    try:
        training = read_card(target).training or {}
    except ModelError:
        return False
    return training.get("started") == state.started or (
        training.get("config") == state.config and training.get("fingerprint") == state.fingerprint)


def _measure(model, card: ModelCard, run: _Run, root: Path, progress) -> ModelCard:
    """The card's measurements: calibration, OOD guard, faithfulness, test metrics, external validation."""
    state = run.state
    predictor = Predictor(model, card, tta=False)  # the card's test metrics are without TTA; test_tta with
    # The predictor reads the fitted temperature from the card from now on.
    step = _steps(progress)
    step(0)
    _calibrate(card, predictor, run.val_s, Path(root).resolve().name)
    step(1)
    _fit_ood_guard(card, predictor, run)
    step(2)
    if run.test_s:
        card.faithfulness = _measure_faithfulness(predictor, run.test_s, run.config.seed)
    step(3)
    _evaluate(card, predictor, run)
    if state.sources:
        card.training["sources"] = state.sources
    step(4)
    _external_validation(card, predictor, run)
    step(len(STEPS))
    return card


def _steps(progress: Callable[[float, str], None] | None) -> Callable[[int], None]:
    """step(k): step k of STEPS begins (k == len(STEPS): all done), told to `progress` with the share done."""
    def step(k: int) -> None:
        if progress:
            done = sum(share for _, share in STEPS[:k])
            what = f"{STEPS[k][0]} ({k + 1} of {len(STEPS)})" if k < len(STEPS) else "card saved"
            progress(min(done, 1.0), what)
    return step


def _inference_model(run: _Run):
    """A freshly built, uncompiled float32 twin of the best checkpoint(s), holding only the weights: the
    optimizer state would triple the file, and inference and Grad-CAM stay in full precision whatever the
    training precision."""
    import keras

    config, contract, train_s = run.config, run.contract, run.train_s
    arch = get_architecture(config.architecture)
    # Members live in RUN_DIR/member<k> (looked up there, so a moved or renamed run dir still finalizes).
    member_dirs = ([run.run_dir / Path(m["run_dir"]).name for m in run.state.members] if arch.members > 1
                   else [run.run_dir])
    trained = []
    for d in member_dirs:
        if not (d / "best.keras").exists():
            raise DataError(f"No checkpoint in {d}: training did not finish a single epoch.")
        trained.append(keras.models.load_model(d / "best.keras", safe_mode=True))
    if arch.members > 1:
        model = ensemble_from_members(arch, contract, trained)
    else:
        model = build_model(config.architecture, contract)
        model.set_weights(trained[0].get_weights())
    if config.precision != "float32":
        # The checkpoint's BatchNorm statistics were gathered with bfloat16 activations: re-estimate them
        # in float32 on the same clean training images the training loop used.
        pick = np.random.default_rng(config.seed).permutation(len(train_s))[:64 * 40]
        x_recal, _, _, _ = load_arrays([train_s[i] for i in pick], contract)
        recalibrate_batchnorm(model, x_recal)
    return model


def _card(out: Path, model, run: _Run, name: str):
    """The card's identity and training record (its measurements are added by finalize_model)."""

    config, state = run.config, run.state
    arch = get_architecture(config.architecture)
    sha = file_sha256(out)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    card = ModelCard(
        name=name, architecture=config.architecture,
        input_contract=run.contract.to_dict(),
        version=f"{time.strftime('%Y%m%d')}-{sha[:8]}", description=arch.description,
        gradcam_layer=arch.gradcam_layers[0] if len(arch.gradcam_layers) == 1 else list(arch.gradcam_layers),
        params=int(model.count_params()), file_sha256=sha, created=now, libraries=library_versions(),
        machine=machine_description(),
        training={
            "config": state.config, "fingerprint": state.fingerprint, "history": state.history,
            "best_epoch": state.best_epoch, "epochs_run": state.epoch, "stopped_early": state.stopped_early,
            "stopped_reason": state.stopped_reason or ("early stopping" if state.stopped_early else ""),
            "train_seconds": round(state.train_seconds, 1), "started": state.started, "finished": now,
            "sizes": {k: len(getattr(state, f"{k}_files")) for k in ("train", "val", "test")},
        },
    )
    if state.members:
        card.training["members"] = state.members
    if state.distribution:  # strategy, workers and replicas of the latest training session
        card.training["distribution"] = state.distribution
    # The Keras backend of the latest training session (brainclf.model.backend): runs without one were TensorFlow's.
    card.training["backend"] = (state.distribution or {}).get("backend", "tensorflow")
    card.training["files"] = {"train": state.train_files, "val": state.val_files}
    if state.started_by:
        card.training["started_by"] = state.started_by
    return card


def _calibrate(card, predictor, val_s: list[Sample], primary: str) -> None:
    """Temperature, refer rule and TTA default, fitted on the validation split (brainclf.scoring.trust); the refer
    rule asks every source (`primary` names the main dataset's) to reach the target on its own validation part."""

    by_mode, sources = {}, None
    for suffix, tta in (("", False), ("_tta", True)):
        raw, kept, _ = predict_samples(predictor.with_tta(tta), val_s)
        by_mode[suffix] = (np.array([s.label for s in kept]), raw)
        sources = [s.source or primary for s in kept]
    card.calibration = fit_calibration(by_mode, fitted_on=f"validation split ({len(val_s)} images)",
                                       target_accuracy=DEFAULT_TARGET, sources=sources)


def _fit_ood_guard(card, predictor, run: _Run) -> None:
    """The feature-distance OOD guard (brainclf.inference.ood) on at most OOD_MAX_TRAIN training images."""

    contract, seed, train_s, val_s, test_s = predictor.contract, run.config.seed, run.train_s, run.val_s, run.test_s
    if len(train_s) > OOD_MAX_TRAIN:
        train_s = stratified_subset(train_s, OOD_MAX_TRAIN, seed)
    x_tr = load_arrays(train_s, contract)[0]
    x_va = load_arrays(val_s, contract)[0]
    x_te = load_arrays(test_s, contract)[0] if test_s else None
    card.ood = fit_guard(predictor, x_tr, x_va, x_te, seed=seed)


def _measure_faithfulness(predictor, test_s: list[Sample], seed: int) -> dict:

    x = load_arrays(stratified_subset(test_s, FAITHFULNESS_N, seed), predictor.contract)[0]
    return measure_faithfulness(predictor, x, seed)


EVERY_SOURCE = "of every source"  # the clean subset at finalising; `evaluate` finds the primary source's only


def _evaluate(card, predictor, run: _Run) -> None:
    """Validation and test metrics (test with and without flip TTA; the clean subset excludes near twins of
    every source's training and validation images: an extra source may hold copies of the primary's test images);
    test files of the split that are gone from the folder are counted in the figures' `missing_files`."""
    state, by_rel, root, val_s, test_s = run.state, run.by_rel, run.root, run.val_s, run.test_s
    training_paths = [by_rel[p].path for p in state.train_files + state.val_files if p in by_rel]
    missing = len(state.test_files) - len(test_s)
    val = evaluate_samples(predictor, val_s, root)
    card.metrics["val"] = {k: v for k, v in val.items() if k not in ("predictions", "misclassified")}
    if test_s:
        test = evaluate_samples(predictor, test_s, root, training_paths=training_paths, training_scope=EVERY_SOURCE)
        card.test_predictions = test.pop("predictions")
        tta = evaluate_samples(predictor.with_tta(True), test_s, root, training_paths=training_paths,
                               training_scope=EVERY_SOURCE)
        card.test_predictions_tta = tta.pop("predictions")
        card.metrics["test"], card.metrics["test_tta"] = ({**r, "missing_files": missing} if missing else r
                                                          for r in (test, tta))


def _external_validation(card, predictor, run: _Run) -> None:
    for src in run.sources:
        held_out = [run.by_rel[p] for p in run.state.external_test_files.get(src.name, []) if p in run.by_rel]
        if held_out:
            report = evaluate_external(predictor, held_out, src.root, membership=(
                f"held-out case groups of {src.name} ({len(held_out)} images): not trained or validated on"))
            card.external_predictions[src.name] = report.pop("predictions")
            # A run split before the 25-bit groups (2026-12-06) keeps its stored 12-bit split when resumed: no claim.
            bits = {"case_grouping_bits": SAME_CASE_THRESHOLD} if run.state.started >= GROUPED_SINCE else {}
            card.metrics.setdefault("external", {})[src.name] = {**report, **bits}
