"""Evaluation: pure functions over samples, features and probabilities."""
from .toy import mode_stats

__all__ = ["mode_stats"]
