"""Sanity on real data: fashion-mnist's test split, judged as if generated, against its train split."""
import pytest
import torch

from mixgan.data import load_dataset
from mixgan.metrics import evaluate_samples, get_classifier

N = 3000


@pytest.mark.fashion
def test_fashion_test_split_scores_like_real_data_and_heavy_noise_does_not():
    data = load_dataset("fashion-mnist")
    cls = get_classifier(data)  # trained on first use, then cached
    assert cls.accuracy >= 0.90
    x = data.images("test")[:N]
    gen = torch.Generator().manual_seed(0)
    noisy = (x + 1.0 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    real = evaluate_samples(x, data, metrics="fid,prdc,qd", n_real=N)
    noise = evaluate_samples(noisy, data, metrics="fid,prdc,qd", n_real=N)
    assert real["n_real"] == N and real["n_fake"] == N
    assert real["fid"] < 0.05 * noise["fid"]
    assert real["precision"] > 0.8 and real["recall"] > 0.8
    assert noise["recall"] < real["recall"] - 0.3
    assert noise["coverage"] < 0.5 * real["coverage"]
    assert real["quality"] > noise["quality"]
