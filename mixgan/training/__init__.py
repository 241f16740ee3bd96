"""Training: the loop, checkpoints, run directories and distributed set-up."""
from .loop import BatchStream, Progress, TrainingDiverged, check_resume, restore, resume_config, train
from .rundir import RunDir

__all__ = ["BatchStream", "Progress", "RunDir", "TrainingDiverged", "check_resume", "restore", "resume_config", "train"]
