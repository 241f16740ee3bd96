"""What a trained mixture model can do beyond sampling: clustering and the quality-diversity sweep."""
from .cluster import ClusterResult, cluster_run
from .tradeoff import tradeoff_sweep

__all__ = ["ClusterResult", "cluster_run", "tradeoff_sweep"]
