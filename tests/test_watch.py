"""Watching a run: plain progress lines, quality during training, the report, the explorer."""
import json

import pytest
import torch

import mixgan

from conftest import small_config


def test_train_without_a_terminal_writes_one_plain_line_per_log_step(tmp_path, cli):
    code, out, err = cli("train", "--dataset", "ring", "--steps", "20", "--out", tmp_path / "run", "--device", "cpu",
                         "--set", "train.log_every=5", "--set", "model.width=16", "--set", "train.batch_size=32")
    assert code == 0
    assert "\r" not in err
    lines = err.splitlines()
    assert [l.split()[3] for l in lines] == ["5/20", "10/20", "15/20", "20/20"]
    assert all("loss_d" in l and "it/s" in l for l in lines)


def test_quiet_train_writes_nothing_on_stderr(tmp_path, cli):
    code, out, err = cli("train", "--dataset", "ring", "--steps", "10", "--out", tmp_path / "run", "--device", "cpu",
                         "--set", "model.width=16", "--quiet")
    assert code == 0 and err == ""


def digits_config(tmp_path, **values):
    """A tiny digits GM-GAN (seconds on a CPU) that evaluates every 10 steps."""
    base = {"data.dataset": "digits", "encoder.enabled": False, "prior.means": "uniform", "prior.sigma": 1.0,
            "model.width": 16, "train.steps": 30, "train.batch_size": 32,
            "train.log_every": 5, "train.sample_every": 10, "train.checkpoint_every": 15, "train.keep_checkpoints": 1,
            "train.eval_every": 10, "train.eval_samples": 200}
    base.update(values)
    return small_config(tmp_path, **base)


def test_kid_equals_the_unbiased_mmd_computed_term_by_term():
    import torch

    from mixgan.metrics import kid, mmd2_unbiased

    def direct(x, y):
        k = lambda a, b: (float(a @ b) / x.shape[1] + 1) ** 3
        n, m = len(x), len(y)
        xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
        return xx + yy - 2 * xy

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g).double(), torch.randn(9, 3, generator=g).double() + 0.5
    assert abs(mmd2_unbiased(x, y) - direct(x, y)) < 1e-9
    mean, std = kid(x, y[:7], subsets=1, subset_size=100)  # one subset of all 7: the sets themselves
    assert abs(mean - direct(x, y[:7])) < 1e-9 and std == 0.0


def test_kid_of_two_samples_of_one_distribution_is_near_zero_and_below_a_shifted_one():
    import torch

    from mixgan.metrics import kid

    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g)
    same, _ = kid(a, b, subsets=5, subset_size=400)
    shifted, _ = kid(a, b + 1, subsets=5, subset_size=400)
    assert abs(same) < 0.05 < shifted


def test_quality_during_training_lands_in_stats_on_the_schedule_and_keeps_the_best_checkpoint(tmp_path):
    from mixgan.training.checkpoint import checkpoint_step, list_checkpoints

    run = mixgan.train(digits_config(tmp_path))
    records = [json.loads(l) for l in (run.path / "stats.jsonl").read_text().splitlines()]
    measured = [r for r in records if "fid" in r]
    assert [r["step"] for r in measured] == [10, 20, 30]
    assert all(r["fid"] > 0 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and "kid" in r for r in measured)
    assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in measured)
    best = min(measured, key=lambda r: r["fid"])
    assert run.dir.read_best() == {"step": best["step"], "fid": best["fid"]}
    kept = {checkpoint_step(p) for p in list_checkpoints(run.path / "checkpoints")}
    assert kept == {best["step"], 30}
    assert mixgan.load(run.path, step=best["step"], device="cpu").step == best["step"]


def test_quality_during_training_works_on_a_folder_without_labels(tmp_path, monkeypatch):
    """No class folders, so no reference classifier: FID, KID, precision and recall are measured in
    the label-free feature space, whose id lands in every record beside them."""
    from PIL import Image

    from mixgan.data import load_dataset
    from mixgan.metrics import selfsup

    monkeypatch.setattr(selfsup, "MIN_STEPS", 20)
    monkeypatch.setattr(selfsup, "BATCH", 32)
    digits = load_dataset("digits")
    (tmp_path / "flat").mkdir()
    x = ((digits.images("train")[:150] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for i, a in enumerate(x):
        Image.fromarray(a[0]).save(tmp_path / "flat" / f"{i}.png")
    run = mixgan.train(digits_config(tmp_path, **{"data.dataset": "folder", "data.data_dir": str(tmp_path / "flat"),
                                                  "prior.components": 4, "model.width": 8, "train.steps": 20,
                                                  "train.eval_samples": 60}))
    assert run.data.y_train is None
    measured = [json.loads(l) for l in (run.path / "stats.jsonl").read_text().splitlines() if '"fid"' in l]
    assert [r["step"] for r in measured] == [10, 20]
    assert all(r["fid"] > 0 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and "kid" in r for r in measured)
    assert all(r["feature_net"].startswith("selfsup-") for r in measured)


def test_a_step_that_is_not_kept_is_refused_in_one_line(tmp_path, cli):
    run = mixgan.train(small_config(tmp_path))
    code, out, err = cli("evaluate", run.path, "--step", "5", "--quiet", "--device", "cpu", "--n", "50")
    assert code == 2
    assert err.strip().splitlines() == [f"mixgan: error: {run.path}: no checkpoint for step 5 (kept: 10, 20)"]


def test_evaluate_step_best_evaluates_the_best_checkpoint(tmp_path, cli):
    run = mixgan.train(digits_config(tmp_path))
    best = run.dir.read_best()["step"]
    code, out, err = cli("evaluate", run.path, "--step", "best", "--quiet", "--device", "cpu", "--n", "100",
                         "--n-real", "100", "--metrics", "fid,kid")
    assert code == 0, err
    assert f"(step {best})" in json.loads((run.path / "metrics.json").read_text())["source"]


def polyline_points(page: str, chart: str, series: str) -> list[tuple[float, float]]:
    import re

    svg = re.search(rf'<svg class="chart" id="{chart}".*?</svg>', page).group(0)
    points = re.search(rf'<polyline data-series="{series}" points="([^"]*)"', svg).group(1)
    return [tuple(map(float, p.split(","))) for p in points.split()]


def test_report_draws_fid_over_steps_losses_and_a_grid_per_sample_step(tmp_path):
    from mixgan.report import write_report

    run = mixgan.train(digits_config(tmp_path))
    page = write_report(run.path).read_text()
    records = [json.loads(l) for l in (run.path / "stats.jsonl").read_text().splitlines()]
    fid_points = polyline_points(page, "chart-fid", "fid")
    assert len(fid_points) == 3
    # a lower FID is drawn higher up: the SVG's y grows downwards
    fids = [r["fid"] for r in records if "fid" in r]
    assert sorted(range(3), key=lambda i: fids[i]) == sorted(range(3), key=lambda i: -fid_points[i][1])
    assert len(polyline_points(page, "chart-losses", "loss_d")) == len(records)
    assert len(polyline_points(page, "chart-pr", "recall")) == 3
    assert page.count('class="frame"') == 5  # grids at step 0, the first log line (5), then 10, 20, 30
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "is_std" not in page and "Precision" in page


def test_explorer_grid_changes_with_the_gaussian_and_the_scale_and_refuses_bad_settings(tmp_path):
    from mixgan.errors import MixganError
    from mixgan.explore import Explorer

    run = mixgan.train(digits_config(tmp_path, **{"train.eval_every": 0, "train.steps": 10}))
    ex = Explorer(run)
    assert ex.kind == "gaussian" and len(ex.choices) == run.model.components == 8
    base = ex.grid_png(0, 1.0, 0)
    assert base == ex.grid_png(0, 1.0, 0)  # same setting, same picture
    assert base != ex.grid_png(1, 1.0, 0) and base != ex.grid_png(0, 0.5, 0) and base != ex.grid_png(0, 1.0, 1)
    score = ex.score(*ex.parse({"choice": ["2"], "scale": ["0.5"], "seed": ["3"]}))
    assert 0 < score["quality"] <= 1 and 0 <= score["diversity"] <= 1
    for query in ({"choice": ["10"]}, {"scale": ["0"]}, {"seed": ["x"]}):
        with pytest.raises(MixganError):
            ex.parse(query)


@pytest.mark.slow
def test_explore_serves_on_localhost_and_stops_on_ctrl_c_with_one_line(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    run = mixgan.train(small_config(tmp_path, **{"train.steps": 10}))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    # SIGINT's default restored in the child: a shell's background job (CI) starts with it ignored
    proc = subprocess.Popen([sys.executable, "-m", "mixgan", "explore", str(run.path), "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = proc.stdout.readline()
        assert first.startswith("explore: http://127.0.0.1:")
        url = first.split()[1]
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "Gaussian 7" in page
        png = urllib.request.urlopen(url + "grid.png?choice=3&scale=0.5&seed=1", timeout=30).read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and out.strip() == "explore: stopped" and err == ""


def test_tensorboard_gets_the_quality_scalars_and_the_sample_grids(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = mixgan.train(digits_config(tmp_path, **{"train.tensorboard": True}))
    acc = EventAccumulator(str(run.path / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    fids = [json.loads(l)["fid"] for l in (run.path / "stats.jsonl").read_text().splitlines() if "fid" in l]
    assert [(s.step, round(s.value, 4)) for s in acc.Scalars("fid")] == list(zip([10, 20, 30], [round(f, 4) for f in fids]))
    assert [s.step for s in acc.Scalars("kid")] == [10, 20, 30]
    assert [i.step for i in acc.Images("samples")] == [0, 5, 10, 20, 30]  # step 0, the first log line, every 10


@pytest.mark.parametrize("model, kind", [("cgan", "class"), ("icgan", "instance"), ("gan", "none")])
def test_explorer_offers_classes_instances_or_nothing_by_model(tmp_path, model, kind):
    from mixgan.explore import Explorer

    run = mixgan.train(digits_config(tmp_path, **{"model.name": model, "train.eval_every": 0, "train.steps": 4,
                                                  "model.width": 8, "model.embedding": "pixels"}))
    ex = Explorer(run)
    assert ex.kind == kind
    if kind == "none":
        assert ex.choices == [] and ex.grid_png(None, 1.0, 0) != ex.grid_png(None, 0.5, 0)
        return
    a, b = ex.choices[0][0], ex.choices[1][0]
    assert ex.grid_png(a, 1.0, 0) != ex.grid_png(b, 1.0, 0)
    assert "quality" in ex.score(a, 1.0, 0)
    if kind == "instance":
        assert ex.instance_png(a)[:4] == b"\x89PNG"


def test_evaluating_during_training_leaves_the_trained_weights_unchanged(tmp_path):
    from test_training import weights

    mixgan.train(digits_config(tmp_path / "a", **{"train.steps": 20}))
    mixgan.train(digits_config(tmp_path / "b", **{"train.steps": 20, "train.eval_every": 0}))
    a, b = weights(tmp_path / "a" / "run"), weights(tmp_path / "b" / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_keeps_its_best_checkpoint_and_schedule(tmp_path):
    from test_training import Crash

    from mixgan.training.checkpoint import checkpoint_step, list_checkpoints

    cfg = digits_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        mixgan.train(cfg, progress=Crash())  # dies at step 13, after the best-so-far checkpoint of step 10
    run = mixgan.train(cfg, resume=True)
    records = [json.loads(l) for l in (run.path / "stats.jsonl").read_text().splitlines()]
    measured = [r for r in records if "fid" in r]
    assert [r["step"] for r in measured] == [10, 20, 30]
    best = min(measured, key=lambda r: r["fid"])["step"]
    assert run.dir.read_best()["step"] == best
    assert best in {checkpoint_step(p) for p in list_checkpoints(run.path / "checkpoints")}


def test_a_run_shorter_than_eval_every_evaluates_nothing(tmp_path):
    run = mixgan.train(digits_config(tmp_path, **{"train.steps": 8, "train.eval_every": 10}))
    assert not any("fid" in l for l in (run.path / "stats.jsonl").read_text().splitlines())
    assert run.dir.read_best() is None


@pytest.mark.parametrize("model, extra", [
    ("cgan", {}), ("acgan", {}), ("icgan", {"model.embedding": "pixels"}),
    ("gmgan-supervised", {"prior.components": 10}),
    ("gmgan", {"encoder.enabled": True, "prior.means": "onehot", "prior.components": 10})])
def test_d_outputs_are_probabilities_and_change_no_state(tmp_path, model, extra):
    from mixgan.training.quality import d_outputs

    run = mixgan.train(digits_config(tmp_path, **{"model.name": model, "train.eval_every": 0, "train.steps": 4,
                                                  "model.width": 8, **extra}))
    m = run.model
    m.attach_data(run.data)
    before = {f"{n}.{k}": v.clone() for n, mod in m.modules().items() for k, v in mod.state_dict().items()}
    out = d_outputs(m, 50)
    assert set(out) == {"d_real", "d_fake"} and all(0 < v < 1 for v in out.values())
    after = {f"{n}.{k}": v for n, mod in m.modules().items() for k, v in mod.state_dict().items()}
    assert all(torch.equal(before[k], after[k]) for k in before)
