"""python -m brainclf train."""

from __future__ import annotations

import sys

from tqdm import tqdm

from .. import ARCHITECTURE_NAMES, CROPS, DEFAULT_ARCHITECTURE, INTENSITIES, PRECISIONS
from .common import say


def cmd_train(args) -> int:
    from ..data import parse_extra_data, resolve_data_root
    from ..training import TrainConfig, TrainProgress, TrainRequest, train

    sources = [parse_extra_data(spec) for spec in args.extra_data or []]
    config = TrainConfig(
        architecture=args.arch, image_size=args.size, channels=args.channels, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.lr, augment=not args.no_augment,
        early_stopping_patience=args.patience, seed=args.seed, max_train_images=args.max_images,
        optimizer=args.optimizer, precision=args.precision, augment_intensity=args.intensity_augment,
        augment_contrast=args.contrast_augment, mixup=args.mixup, label_smoothing=args.label_smoothing,
        style_reweight=args.style_reweight,
        extra_sources=[{"name": s.name, "weight": s.weight} for s in sources],
        crop=args.crop, intensity=args.intensity, extra_train_fraction=args.extra_train_fraction,
        refit=args.refit, extra_val_fold=args.extra_val_fold,
    )
    bar = None

    def hook(p: TrainProgress):
        nonlocal bar
        if p.stage == "training":
            if bar is None or bar.total != p.epochs * p.batches:
                bar = tqdm(total=p.epochs * p.batches, desc="train", unit="step", file=sys.stderr,
                           dynamic_ncols=True)
            bar.n = p.epoch * p.batches + (p.batch if p.batch < p.batches else 0)
            h = p.history
            if h.get("val_loss"):
                bar.set_postfix(epoch=f"{p.epoch}/{p.epochs}", loss=f"{h['loss'][-1]:.3f}",
                                val_loss=f"{h['val_loss'][-1]:.3f}", val_acc=f"{h['val_accuracy'][-1]:.3f}")
            bar.refresh()
            if p.epoch_end and h.get("val_loss"):
                bar.write(f"epoch {p.epoch}/{p.epochs} loss {h['loss'][-1]:.4f} acc {h['accuracy'][-1]:.4f} "
                      f"val_loss {h['val_loss'][-1]:.4f} val_acc {h['val_accuracy'][-1]:.4f} "
                      f"({p.elapsed_s:.0f}s)", file=sys.stderr)
        else:
            say(f"[{p.stage}] {p.message}", file=sys.stderr, flush=True)

    out = train(TrainRequest(config, resolve_data_root(args.data), args.name, models_dir=args.models_dir, progress=hook,
                resume=not args.no_resume, strategy=args.strategy, finish_now=args.finish_now, extra_data=sources))
    if bar:
        bar.close()
    say(f"saved {out}")
    return 0


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a model and save it with its card",
                       description="Train an architecture on DATA (Training/Testing layout or pooled class "
                       "folders) and save MODELS_DIR/NAME.keras with NAME.json. Resumes an interrupted run.")
    t.add_argument("--data", help="dataset root (default: $BRAINCLF_DATA)")
    t.add_argument("--name", default="default", help="model name (file name in --models-dir)")
    t.add_argument("--arch", default=DEFAULT_ARCHITECTURE, help=f"one of {', '.join(ARCHITECTURE_NAMES)}")
    t.add_argument("--size", type=int, help="input size in pixels (default: the architecture's)")
    t.add_argument("--channels", type=int, choices=(1, 3), help="1 grayscale, 3 RGB")
    t.add_argument("--epochs", type=int, default=50)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    t.add_argument("--optimizer", default="adamw", choices=("adamw", "adam"))
    t.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="training arithmetic: mixed_bfloat16 is ~1.7x faster on CPUs with bfloat16 units "
                   "(AVX512-BF16/AMX); the saved model is float32 either way")
    t.add_argument("--patience", type=int, default=12, help="early-stopping patience in epochs")
    _add_augmentation_args(t)
    t.add_argument("--extra-data", action="append", metavar="DIR[:WEIGHT]",
                   help="another labelled folder of class sub-folders (any subset of the classes); repeatable. "
                        "Split by case groups into train/validation/held-out test; WEIGHT multiplies its loss")
    t.add_argument("--extra-train-fraction", type=float, default=1.0, metavar="F",
                   help="train on this share (0-1] of the extra sources' training case groups; validation and "
                        "held-out test unchanged (a learning curve)")
    t.add_argument("--extra-val-fold", type=int, default=0, metavar="K",
                   help="grouped k-fold: fold K (0-4) of the extra sources' development cases is validation (0: the "
                        "usual split; the held-out part never changes). Train a recipe on every fold (a job array's "
                        "index fits here); compare recipes with scripts/compare_folds.py")
    t.add_argument("--refit", action="store_true",
                   help="the model that ships: the extra sources' held-out test part joins training (choose "
                        "the recipe on a split run first; its figures are the held-out ones); validation stays "
                        "aside for early stopping, calibration and the refer rule")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--max-images", type=int, help="train on a stratified subset (smoke tests)")
    t.add_argument("--models-dir", default="models")
    t.add_argument("--no-resume", action="store_true", help="start over even if a run exists")
    t.add_argument("--finish-now", action="store_true",
                   help="end an interrupted run where it stands: save its best checkpoint so far with the card")
    t.add_argument("--strategy", default="default", choices=("default", "mirrored", "multiworker"),
                   help="tf.distribute strategy: one device, all local GPUs, or several machines (TF_CONFIG); "
                        "KERAS_BACKEND=jax trains on one device")
    t.set_defaults(func=cmd_train)


def _add_augmentation_args(t) -> None:
    """What training varies in each image, and the input contract's optional steps."""
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--intensity-augment", action="store_true",
                   help="add random gamma, brightness and noise (differences between sources)")
    t.add_argument("--contrast-augment", action="store_true",
                   help="map a quarter of the training slices through a random intensity curve (black kept black), so "
                        "which tissue is bright, the MR sequence, cannot stand in for the class")
    t.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="blend each training image with another of its batch, Beta(ALPHA, ALPHA); 0: off")
    t.add_argument("--label-smoothing", type=float, default=0.0, metavar="S",
                   help="train towards (1 - S) of the labelled class plus S spread over all classes; 0: off")
    t.add_argument("--style-reweight", type=float, default=0.0, metavar="FACTOR",
                   help="primary-source slices whose class image style alone misreads (out of fold) weigh "
                        "1 + FACTOR times the rest, the source's mean weight kept; 0: off")
    t.add_argument("--crop", default="none", choices=CROPS,
                   help="'head': crop each slice to the head's bounding box before padding (part of the "
                        "model's input contract, so prediction does the same)")
    t.add_argument("--intensity", default="none", choices=INTENSITIES,
                   help="'head-p99': scale each slice so its head's 99th intensity percentile is white "
                        "(input contract)")
