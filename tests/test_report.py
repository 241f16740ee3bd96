"""The report's hints name only what would work for the run; its figures and numbers read right."""
import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

import mixgan
from mixgan.report import write_report

from conftest import small_config


def digits_run(tmp_path, model, **values):
    base = {"model.name": model, "data.dataset": "digits", "model.width": 8, "train.steps": 4,
            "train.log_every": 2, "train.sample_every": 4, "train.checkpoint_every": 4, "train.eval_every": 0,
            "model.embedding": "pixels", "prior.components": 10}
    base.update(values)
    return mixgan.train(small_config(tmp_path, **base))


def commands(page: str) -> list[str]:
    return re.findall(r"<code>([^<]*)</code>", page)


@pytest.mark.parametrize("model, clusters", [("gan", False), ("gmgan", True), ("cgan", False), ("icgan", False)])
def test_hints_name_a_command_or_setting_only_where_it_works_for_the_model(tmp_path, model, clusters):
    run = digits_run(tmp_path, model)
    page = write_report(run.path).read_text()
    said = commands(page)
    assert (f"mixgan cluster {run.path}" in said) == clusters
    if not clusters:
        assert "has none" in page and not any(c.startswith("mixgan cluster") for c in said)
    assert f"mixgan tradeoff {run.path}" in said and f"mixgan evaluate {run.path}" in said
    # quality was switched off: the setting is named, with a schedule this run's 4 steps reach
    every = [int(c.split("=")[1]) for c in said if c.startswith("--set train.eval_every=")]
    assert every and 1 <= every[0] <= 4


def test_a_run_stopped_before_its_first_evaluation_is_told_to_resume_not_to_set_the_schedule(tmp_path):
    run = digits_run(tmp_path, "gmgan", **{"train.steps": 4, "train.eval_every": 500})
    page = write_report(run.path).read_text()
    # the run finished its 4 steps: 500 is beyond them, so a shorter schedule is what would help
    assert "beyond the run" in page and "--set train.eval_every=500" not in page
    assert int(re.search(r"--set train\.eval_every=(\d+)", page).group(1)) <= 4
    # the same run as if it had been stopped at step 4 of 1000: resuming reaches step 500
    cfg = run.path / "config.toml"
    cfg.write_text(re.sub(r"(?m)^steps = 4\b", "steps = 1000", cfg.read_text()))
    page = write_report(run.path).read_text()
    assert f"mixgan train --resume --out {run.path}" in commands(page)
    assert "--set train.eval_every" not in page and "stopped at step 4 of 1000" in page


def test_points_data_gets_no_quality_or_sweep_command(tmp_path):
    run = mixgan.train(small_config(tmp_path, **{"train.steps": 4, "train.checkpoint_every": 4}))
    page = write_report(run.path).read_text()
    said = commands(page)
    assert not any("eval_every" in c or c.startswith("mixgan tradeoff") for c in said)
    assert "2-D points" in page and f"mixgan cluster {run.path}" in said


def test_a_single_logged_step_says_a_curve_needs_two(tmp_path):
    run = digits_run(tmp_path, "gan", **{"train.steps": 2, "train.checkpoint_every": 2, "train.sample_every": 2})
    page = write_report(run.path).read_text()
    losses = re.search(r'<svg class="chart" id="chart-losses".*?</svg>', page).group(0)
    assert 'class="few"' in losses and "a curve needs two" in losses
    longer = digits_run(tmp_path / "b", "gan")
    assert 'class="few"' not in write_report(longer.path).read_text()


def test_no_negative_zero_and_huge_values_render(tmp_path):
    run = digits_run(tmp_path, "gmgan")
    with open(run.path / "stats.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss_d": 1e308, "diversity": -0.0}) + "\n")
        f.write(json.dumps({"step": 6, "loss_d": -1e308, "diversity": -1e-9}) + "\n")
    (run.path / "tradeoff.json").write_text(json.dumps({"scales": [0.5, 1.0], "quality": [0.9, 0.8],
                                                        "diversity": [-0.0, -0.00001]}))
    page = write_report(run.path).read_text()
    assert not re.search(r">-0(\.0*)?<", page), re.findall(r">-0[^<]*<", page)
    coords = re.search(r'data-series="loss_d" points="([^"]*)"', page).group(1)
    assert all(np.isfinite(float(v)) for p in coords.split() for v in p.split(","))


def _images(page: str, css: str) -> list[Image.Image]:
    found = re.findall(rf'<figure class="{css}"><img src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(b))).convert("L") for b in found]


def test_sigma_grids_share_one_scale_and_row_labels_are_readable(tmp_path):
    from mixgan.viz import image_grid, save_png

    import torch

    run = digits_run(tmp_path, "gmgan")
    labels = [f"Gaussian {k}" for k in range(4)]
    for i in range(3):
        save_png(image_grid(torch.rand(4 * 8, 1, 8, 8) * 2 - 1, 4), run.path / f"tradeoff-grid-{i}.png")
    (run.path / "tradeoff.json").write_text(json.dumps({
        "scales": [0.25, 1, 2], "quality": [1, 1, 1], "diversity": [0, 0, 0],
        "grids": [f"tradeoff-grid-{i}.png" for i in range(3)], "grid_labels": labels}))
    grids = _images(write_report(run.path).read_text(), "scale")
    assert len(grids) == 3 and len({g.size for g in grids}) == 1
    # shown 320 px wide: a label's letters must stand at least 9 px tall there
    g = np.asarray(grids[0])
    row = g.shape[0] / 4
    margin = g[: int(row), : g.shape[1] - image_grid(torch.zeros(8, 1, 8, 8), 1).shape[1]]
    dark = np.where((margin < 128).any(1))[0]
    assert (dark.max() - dark.min() + 1) * 320 / g.shape[1] >= 9
