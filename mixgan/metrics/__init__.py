"""Evaluation: pure functions over samples, features and probabilities, and the reference classifier."""
from .backbones import BACKBONES, get_backbone
from .cas import classification_accuracy_score, conditional_accuracy
from .classifier import Backbone, ReferenceClassifier, get_classifier, reference_features
from .fid import feature_stats, fid, frechet_distance, intra_fid
from .inception_score import inception_score
from .kid import kid, mmd2_unbiased, polynomial_kernel
from .msssim import mean_pairwise_msssim, ms_ssim, msssim_setting
from .prdc import knn_radii, prdc
from .quality_diversity import inter_diversity, intra_diversity, quality_diversity, quality_score
from .registry import METRICS, SCORES, TRAINING_KEYS, Metric, Score
from .suite import Evaluator, SampleSource, array_source, as_images, evaluate_samples, model_source
from .toy import mode_stats

__all__ = ["BACKBONES", "Backbone", "Evaluator", "METRICS", "Metric", "SCORES", "SampleSource", "Score",
           "TRAINING_KEYS", "array_source", "model_source", "ReferenceClassifier", "as_images", "classification_accuracy_score",
           "conditional_accuracy", "evaluate_samples", "feature_stats", "fid", "frechet_distance", "get_backbone",
           "get_classifier", "inception_score", "inter_diversity", "intra_diversity", "intra_fid", "kid", "knn_radii",
           "mean_pairwise_msssim", "mmd2_unbiased", "mode_stats", "ms_ssim", "msssim_setting", "polynomial_kernel",
           "prdc", "quality_diversity", "quality_score", "reference_features"]
