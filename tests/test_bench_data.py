import numpy as np


def test_synthetic_classes_differ_in_shape_and_colour():
    from benchmarks.data import draw

    x, y = draw(400, 32, seed=1)
    assert x.shape == (400, 3, 32, 32) and x.dtype == np.uint8 and set(y.tolist()) == set(range(10))
    again, _ = draw(400, 32, seed=1)
    assert np.array_equal(x, again)
    centre = x[:, :, 16, 16].astype(int)  # the shape covers the centre of most images (not rings)
    warm = centre[(y < 5) & (y % 5 != 3)]
    cool = centre[(y >= 5) & (y % 5 != 3)]
    assert np.median(warm[:, 0] - warm[:, 2]) > 100 and np.median(cool[:, 2] - cool[:, 0]) > 100


def test_benchmark_smoke_run_reports_its_measurements(capsys):
    from benchmarks.data import main

    assert main(["--smoke"]) == 0
    out = capsys.readouterr().out
    for what in ("mixgan data pack --resolution 64", "pack 600 images", "loader, 1 worker(s)",
                 "default gmgan training step"):
        assert what in out
