"""Training, one module per job:

  config     TrainConfig, TrainProgress (with its progress and time-left arithmetic), TrainingCancelled
  request    TrainRequest: one run as asked for, train()'s one argument
  state      RunState: state.json, saved atomically after every epoch (the resume point's bookkeeping)
  prepare    the leakage-free split of a new run, a resumed run's saved split, the arrays; "preparing" reports
  callbacks  the end of every epoch: precise-BatchNorm validation, checkpoints, progress reports
  loop       train(): a seeded, resumable run; tf.data, distribution strategy, model and optimizer
  batches    the training batches without tf.data (KERAS_BACKEND=jax): a keras.utils.PyDataset
  ensemble   ensembles: one resumable run per member, then one model
  finalize   the best checkpoint → models/NAME.keras + its card (calibration, OOD guard, faithfulness, metrics)
"""

from importlib import import_module

from .config import ProgressHook, TrainConfig, TrainingCancelled, TrainProgress, runs_dir
from .request import TrainRequest
from .state import RunState

# The loop and finalisation import TensorFlow at their top: they load on first use (PEP 562), so that importing
# brainclf.training.config (the Model page, jobs) does not make a page wait ~2.5 s for TensorFlow.
_LAZY = {"train": ".loop", "distribution_strategy": ".loop", "tf_dataset": ".loop", "finalize_model": ".finalize"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ProgressHook", "RunState", "TrainConfig", "TrainProgress", "TrainRequest", "TrainingCancelled",
           "distribution_strategy",
           "finalize_model", "runs_dir", "tf_dataset", "train"]
