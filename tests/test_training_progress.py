"""brainclf.training's progress: the arithmetic the app and CLI show (1-based epochs, share done, time left from
the epochs' pace without the preparation) and the "preparing" reports sent while the images are read."""

from __future__ import annotations

import threading
import types

import pytest

from brainclf.training import TrainConfig, TrainingCancelled, TrainProgress, TrainRequest, train
from brainclf.training.config import EVALUATION_EPOCHS, evaluation_reporter


def training(**kw) -> TrainProgress:
    return TrainProgress("training", **{"epochs": 30, "batches": 40, **kw})


def test_epochs_are_shown_one_based():
    assert training(epoch=0, batch=1).current_epoch() == 1  # the first epoch is running
    assert training(epoch=0, batch=1).text().startswith("epoch 1/30, batch 1/40")
    assert training(epoch=0, batch=40).current_epoch() == 1  # its last batch, before validation
    assert training(epoch=1, batch=40, epoch_end=True).current_epoch() == 1  # its end-of-epoch report
    assert training(epoch=1, batch=1).current_epoch() == 2
    assert training(epoch=30, batch=40, epoch_end=True).text().startswith("epoch 30/30")
    assert TrainProgress("evaluating").current_epoch() == 0


def test_fraction_done_counts_the_running_epochs_batches():
    whole = 4 + EVALUATION_EPOCHS  # the final evaluation is part of the run
    assert training(epoch=1, batch=20, epochs=4).fraction_done() == pytest.approx(1.5 / whole)
    assert training(epoch=0, batch=40, epochs=4).fraction_done() == 0.0  # not validated yet
    assert training(epoch=1, batch=40, epochs=4, epoch_end=True).fraction_done() == pytest.approx(1 / whole)
    assert training(epoch=4, batch=40, epochs=4, epoch_end=True).fraction_done() < 1.0  # evaluation to come
    assert TrainProgress("preparing", fraction=0.3).fraction_done() == pytest.approx(0.3)
    assert TrainProgress("preparing", fraction=1.7).fraction_done() == 1.0
    assert TrainProgress("done").fraction_done() == 1.0
    assert TrainProgress("evaluating").fraction_done() == 0.0


def test_eta_comes_from_the_epochs_pace_and_excludes_preparation():
    # 70 s of preparation, then 30 s for 1.5 epochs: 2.5 epochs left at 20 s each, and the final evaluation.
    p = training(epoch=1, batch=20, epochs=4, elapsed_s=100.0, train_elapsed_s=30.0)
    left = 20.0 * (2.5 + EVALUATION_EPOCHS)
    assert p.eta_s() == pytest.approx(left)
    assert f"~{left:.0f}s left" in p.text() and "100s elapsed" in p.text()
    # A resumed run: only this session's epochs set the pace (10 s for epoch 3, one left).
    assert training(epoch=3, epochs=4, first_epoch=2, train_elapsed_s=10.0).eta_s() == pytest.approx(
        10.0 * (1 + EVALUATION_EPOCHS))
    assert training(epoch=2, epochs=4, first_epoch=2, train_elapsed_s=3.0).eta_s() is None  # nothing done yet
    assert "left" not in training(epoch=0, batch=0).text()
    assert TrainProgress("preparing", fraction=0.5, train_elapsed_s=5.0).eta_s() is None


def test_preparing_text_shows_the_share_done():
    assert TrainProgress("preparing", message="Loading 40 images", fraction=0.25).text() == "Loading 40 images (25 %)"
    assert TrainProgress("preparing", message="Finding groups").text() == "Finding groups"


def test_the_final_evaluation_has_progress_and_a_time_left():
    """Issue #27: "Evaluating the best checkpoint" (~52 s, longer than the epochs of a small run) showed no
    progress and the time left ignored it."""
    start = TrainProgress("evaluating", epoch=3, epochs=4, message="Evaluating the best checkpoint: loading it")
    half = TrainProgress("evaluating", epoch=3, epochs=4, fraction=0.5, eval_elapsed_s=20.0, elapsed_s=300.0,
                         message="Evaluating the best checkpoint: test metrics (4 of 5)")
    whole = 4 + EVALUATION_EPOCHS
    assert start.fraction_done() == pytest.approx(4 / whole)  # stopped early after 3: the epochs' share is done
    assert half.fraction_done() == pytest.approx((4 + EVALUATION_EPOCHS / 2) / whole)
    assert start.fraction_done() < half.fraction_done() < TrainProgress("done").fraction_done() == 1.0
    assert start.eta_s() is None and half.eta_s() == pytest.approx(20.0)  # at its own pace so far
    assert half.text() == "Evaluating the best checkpoint: test metrics (4 of 5) — 300s elapsed, ~20s left"
    assert TrainProgress("evaluating", fraction=0.5).fraction_done() == 0.5  # a finished run re-finalized


def test_the_evaluation_reporter_sends_growing_shares_with_the_runs_epochs():
    seen = []
    report = evaluation_reporter(seen.append, lambda: 42.0, epoch=4, epochs=4, history={"loss": [1.0]})
    for share, step in ((0.0, "loading it"), (0.3, "OOD guard (2 of 5)"), (1.0, "card saved")):
        report(share, step)
    assert [p.stage for p in seen] == ["evaluating"] * 3 and [p.fraction for p in seen] == [0.0, 0.3, 1.0]
    assert seen[1].message == "Evaluating the best checkpoint: OOD guard (2 of 5)"
    assert all(p.epochs == 4 and p.elapsed_s == 42.0 and p.history == {"loss": [1.0]} for p in seen)
    assert seen[2].eval_elapsed_s >= seen[0].eval_elapsed_s >= 0
    evaluation_reporter(None, lambda: 0.0)(0.5, "no hook")  # no hook: nothing to do


def test_finalize_reports_each_step_in_order():
    from brainclf.training.finalize import STEPS, _steps

    seen = []
    step = _steps(lambda share, what: seen.append((share, what)))
    for k in range(len(STEPS) + 1):
        step(k)
    shares = [s for s, _ in seen]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == pytest.approx(1.0)
    assert seen[0][1] == f"{STEPS[0][0]} (1 of {len(STEPS)})" and seen[-1][1] == "card saved"
    assert {name for name, _ in STEPS} == {"calibration and refer rule on validation", "OOD guard",
                                          "Grad-CAM faithfulness", "test metrics", "external validation"}


def test_preparation_is_reported_and_left_out_of_the_epoch_time(synthetic_dataset, tmp_path, monkeypatch):
    """A real (tiny) run, cancelled after its first batch: the hook sees "preparing" reports whose fraction
    grows to 1 through both phases, and the training reports' epoch time leaves the preparation out.

    The run's clock (time.time in the session, which starts it, and in the callbacks, which time the epochs) is a
    fake one that moves only when the hook says: 100 s per "preparing" report, nothing during the epochs."""
    from importlib import import_module

    clock = [1_000_000.0]
    fake = types.SimpleNamespace(time=lambda: clock[0])
    for module in ("brainclf.training.session", "brainclf.training.callbacks"):
        monkeypatch.setattr(import_module(module), "time", fake)
    cancel = threading.Event()
    events = []

    def hook(p: TrainProgress):
        events.append(p)
        if p.stage == "preparing":
            clock[0] += 100.0  # a slow preparation: it must not count as epoch time
        if p.stage == "training":
            cancel.set()

    with pytest.raises(TrainingCancelled):
        train(TrainRequest(TrainConfig(image_size=32, epochs=2, batch_size=8, augment=False), data=synthetic_dataset,
              name="prep", models_dir=tmp_path / "m", run_dir=tmp_path / "run", progress=hook, cancel=cancel))
    prep = [p for p in events if p.stage == "preparing"]
    fractions = [p.fraction for p in prep]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert len(set(fractions)) >= 5
    assert any("near-duplicate" in p.message for p in prep) and any(p.message.startswith("Loading") for p in prep)
    first = next(p for p in events if p.stage == "training")
    assert first.current_epoch() == 1 and first.first_epoch == 0
    assert [p.elapsed_s for p in prep] == [100.0 * k for k in range(len(prep))]  # since train() was called
    assert first.elapsed_s == 100.0 * len(prep) and first.train_elapsed_s == 0.0  # no time passed in the epoch
    assert events.index(prep[-1]) < events.index(first)
