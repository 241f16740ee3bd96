"""Training: the loop, checkpoints, run directories and distributed set-up."""
from .loop import BatchStream, Progress, TrainingDiverged, restore, train
from .rundir import RunDir

__all__ = ["BatchStream", "Progress", "RunDir", "TrainingDiverged", "restore", "train"]
