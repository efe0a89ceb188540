"""Training, one module per job:

  config     TrainConfig, TrainProgress (with its progress and time-left arithmetic), TrainingCancelled
  state      RunState: state.json, saved atomically after every epoch (the resume point's bookkeeping)
  prepare    the leakage-free split of a new run, a resumed run's saved split, the arrays; "preparing" reports
  callbacks  the end of every epoch: precise-BatchNorm validation, checkpoints, progress reports
  loop       train(): a seeded, resumable run; tf.data, distribution strategy, model and optimizer
  ensemble   ensembles: one resumable run per member, then one model
  finalize   the best checkpoint → models/NAME.keras + its card (calibration, OOD guard, faithfulness, metrics)
"""

from .config import ProgressHook, TrainConfig, TrainingCancelled, TrainProgress, runs_dir
from .finalize import finalize_model
from .loop import distribution_strategy, tf_dataset, train
from .state import RunState

__all__ = ["ProgressHook", "RunState", "TrainConfig", "TrainProgress", "TrainingCancelled", "distribution_strategy",
           "finalize_model", "runs_dir", "tf_dataset", "train"]
