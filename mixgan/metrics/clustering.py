"""Scores of a clustering against true labels: accuracy after Hungarian matching, NMI, ARI."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def confusion(pred: np.ndarray, label: np.ndarray, n_pred: int | None = None, n_label: int | None = None) -> np.ndarray:
    """Counts: rows are predicted clusters, columns true labels."""
    n_pred = n_pred or int(pred.max()) + 1
    n_label = n_label or int(label.max()) + 1
    out = np.zeros((n_pred, n_label), dtype=np.int64)
    np.add.at(out, (pred, label), 1)
    return out


def hungarian_mapping(pred: np.ndarray, label: np.ndarray) -> dict[int, int]:
    """The one-to-one cluster -> label assignment that maximises agreement."""
    counts = confusion(pred, label)
    rows, cols = linear_sum_assignment(-counts)
    return dict(zip(rows.tolist(), cols.tolist()))


def cluster_accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    """Share of items whose cluster, matched one-to-one to labels, is their label."""
    pred, label = np.asarray(pred), np.asarray(label)
    mapping = hungarian_mapping(pred, label)
    return float(np.mean([mapping.get(p, -1) == y for p, y in zip(pred, label)]))


def cluster_scores(pred, label) -> dict[str, float]:
    pred, label = np.asarray(pred), np.asarray(label)
    return {"accuracy": cluster_accuracy(pred, label),
            "nmi": float(normalized_mutual_info_score(label, pred)),
            "ari": float(adjusted_rand_score(label, pred))}


def majority_merge(pred: np.ndarray, label: np.ndarray, n_clusters: int) -> np.ndarray:
    """For each of ``n_clusters`` clusters, the most frequent true label among its members (-1 if empty).

    Used where there are more Gaussians than classes: each Gaussian is merged into the class
    it mostly captures on the training split, then the test split is scored.
    """
    counts = confusion(np.asarray(pred), np.asarray(label), n_pred=n_clusters)
    merged = counts.argmax(1)
    merged[counts.sum(1) == 0] = -1
    return merged
