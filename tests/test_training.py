import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mixgan
from mixgan.errors import MixganError
from mixgan.training.checkpoint import latest_checkpoint, list_checkpoints

from conftest import small_config


class Crash:
    """A progress reporter that makes the process "die" at step 13, after the checkpoint of step 10."""

    def start(self, initial, total): pass
    def close(self): pass
    def update(self, step, logs):
        if step == 13:
            raise KeyboardInterrupt


def weights(run_dir):
    ckpt = list_checkpoints(run_dir / "checkpoints")[-1]
    return load_file(str(ckpt.with_suffix(".safetensors")))


@pytest.mark.parametrize("model, extra", [("gmgan", {"train.lr_decay": "linear"}),
                                          ("gan", {"train.ema": True, "train.d_steps": 2}),
                                          ("gmgan", {"prior.dynamic": True, "data.dataset": "digits",
                                                     "model.width": 8})])
def test_resume_matches_uninterrupted_run(tmp_path, model, extra):
    full = small_config(tmp_path / "a", **{"model.name": model, **extra})
    mixgan.train(full)

    crashed = small_config(tmp_path / "b", **{"model.name": model, **extra})
    with pytest.raises(KeyboardInterrupt):
        mixgan.train(crashed, progress=Crash())
    mixgan.train(crashed, resume=True)
    wa, wb = weights(tmp_path / "a" / "run"), weights(tmp_path / "b" / "run")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    steps = [json.loads(l)["step"] for l in (tmp_path / "b" / "run" / "stats.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]


def test_same_seed_same_numbers_other_seed_differs(tmp_path):
    mixgan.train(small_config(tmp_path / "a"))
    mixgan.train(small_config(tmp_path / "b"))
    mixgan.train(small_config(tmp_path / "c", **{"train.seed": 1}))
    a, b, c = (weights(tmp_path / d / "run") for d in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_run_directory_contents(tmp_path):
    cfg = small_config(tmp_path, **{"prior.components": 4})
    run = mixgan.train(cfg)
    d = run.path
    assert mixgan.load(d).cfg == mixgan.config.load_config(d / "config.toml")
    stats = [json.loads(l) for l in (d / "stats.jsonl").read_text().splitlines()]
    assert {"step", "loss_d", "loss_g", "it_per_s", "samples_per_s"} <= set(stats[0])
    # step 0, the first log line (5), then every sample_every
    assert sorted(p.name for p in (d / "samples").iterdir()) == [f"step-{s:06d}.png" for s in (0, 5, 10, 20)]
    # keep_checkpoints=2 by default, both complete pairs
    names = sorted(p.name for p in (d / "checkpoints").iterdir())
    assert names == ["step-000010.json", "step-000010.safetensors", "step-000020.json", "step-000020.safetensors"]


def test_image_grid_has_one_row_per_component(tmp_path):
    from PIL import Image

    cfg = small_config(tmp_path, **{"data.dataset": "digits", "prior.components": 6, "model.width": 8,
                                    "train.steps": 2, "train.sample_every": 2})
    run = mixgan.train(cfg)
    img = np.asarray(Image.open(run.path / "samples" / "step-000002.png"))
    cell = (8 + 1) * 8  # 8x8 images, pad 1, enlarged 8 times
    assert img.shape[0] == 6 * cell + 8 and img.shape[1] == 10 * cell + 8


def test_sampling_api(tmp_path):
    run = mixgan.train(small_config(tmp_path))
    s = run.sample(50, component=3, scale=0.5)
    assert s.x.shape == (50, 2) and (s.component == 3).all()
    a, b = run.sample(20, seed=4), run.sample(20, seed=4)
    assert torch.equal(a.x, b.x)
    with pytest.raises(MixganError, match="component must be in"):
        run.sample(5, component=8)


def test_damaged_newest_checkpoint_is_skipped(tmp_path):
    run = mixgan.train(small_config(tmp_path))
    newest = list_checkpoints(run.path / "checkpoints")[-1].with_suffix(".safetensors")
    newest.write_bytes(newest.read_bytes()[:100])
    states, record = latest_checkpoint(run.path / "checkpoints")
    assert record["step"] == 10


def test_resume_into_another_model_is_refused(tmp_path):
    cfg = small_config(tmp_path)
    mixgan.train(cfg)
    before = sorted((tmp_path / "run" / "checkpoints").iterdir())
    other = small_config(tmp_path, **{"model.name": "gan"})
    with pytest.raises(MixganError, match="model.name='gmgan', not 'gan'"):
        mixgan.train(other, resume=True)
    assert sorted((tmp_path / "run" / "checkpoints").iterdir()) == before


def test_existing_run_is_never_overwritten(tmp_path):
    mixgan.train(small_config(tmp_path))
    with pytest.raises(MixganError, match="already exists"):
        mixgan.train(small_config(tmp_path))


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    from mixgan.models.base import GANModel

    original = GANModel.train_step
    calls = {"n": 0}

    def poisoned(self, next_batch, gen):
        calls["n"] += 1
        logs = original(self, next_batch, gen)
        if calls["n"] == 14:
            logs["loss_d"] = torch.tensor(float("nan"))
        return logs

    monkeypatch.setattr(GANModel, "train_step", poisoned)
    with pytest.raises(MixganError, match=r"loss_d became nan at step 14.*checkpoint \(step 10\)"):
        mixgan.train(small_config(tmp_path))
    assert mixgan.load(tmp_path / "run").step == 10


def test_sample_cli_on_points_writes_npz_and_scatter(tmp_path, cli):
    from PIL import Image

    run = mixgan.train(small_config(tmp_path))
    out, png = tmp_path / "s.npz", tmp_path / "s.png"
    code, stdout, err = cli("sample", run.path, "--n", 300, "--component", 2, "--out", out, "--grid", png)
    assert code == 0, err
    arrays = np.load(out)
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (300, 2)
    assert (arrays["component"] == 2).all() and arrays["component"].dtype == np.int64
    from mixgan.viz import scatter

    scatter(torch.from_numpy(arrays["x"]), tmp_path / "ref.png", colors=torch.from_numpy(arrays["component"]))
    scatter(torch.from_numpy(arrays["x"]) + 0.5, tmp_path / "moved.png", colors=torch.from_numpy(arrays["component"]))
    drawn, ref, moved = (np.asarray(Image.open(p)) for p in (png, tmp_path / "ref.png", tmp_path / "moved.png"))
    assert np.array_equal(drawn, ref) and not np.array_equal(drawn, moved)  # a scatter of these very samples
    code, stdout, err = cli("sample", run.path, "--n", 5, "--component", 9, "--out", out)
    assert code == 2 and err.startswith("mixgan: error: component must be in [0, 7]")


def test_info_cli_reports_model_data_progress_and_the_settings(tmp_path, cli):
    import textwrap

    from mixgan.config import load_config

    cfg = small_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        mixgan.train(cfg, progress=Crash())
    path = tmp_path / "run"
    code, out, err = cli("info", path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:4] == [f"run:      {path}", "model:    gmgan", "dataset:  ring", "steps:    10 of 20 (checkpointed)"]
    last = json.loads((path / "stats.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 10 and lines[4].startswith(f"last log: step=10, loss_d={last['loss_d']}")
    from mixgan.config import flat_dict

    table = textwrap.dedent(out.split("settings:\n", 1)[1]).splitlines()[2:]
    shown = {row.split()[0]: row.split()[1] for row in table}
    assert shown == {k: repr(v) for k, v in flat_dict(load_config(path / "config.toml")).items()}
    code, out, err = cli("info", tmp_path / "nothing")
    assert code == 2 and err.startswith("mixgan: error: ") and len(err.splitlines()) == 1


@pytest.mark.parametrize("name, extra", [("icgan", {"model.embedding": "pixels"}), ("cgan", {}), ("gmgan", {})])
def test_one_to_moves_every_tensor_the_model_holds(tmp_path, name, extra):
    """The device contract: parameters, held data (training set, instances, neighbours, labels) and
    optimizer moments all follow model.to; nothing held enters the checkpointed module states."""
    from mixgan.data import load_dataset
    from mixgan.models import build_model
    from mixgan.training.loop import model_states

    cfg = small_config(tmp_path, **{"model.name": name, "data.dataset": "digits", "model.width": 8,
                                    "prior.components": 10, **extra})
    data = load_dataset("digits")
    model = build_model(cfg, data.spec())
    model.attach_data(data)
    gen = torch.Generator().manual_seed(0)
    index = iter([torch.arange(32)])
    model.train_step(lambda: model.batch(next(index)), gen)
    held = set(dict(model.held.named_buffers(remove_duplicate=False))) | set(model.on_disk)  # on disk: read by rows
    assert {"x_train", "y_train"} <= set(held) and (name != "icgan" or {"features", "neighbors"} <= set(held))
    states = model_states(model)
    assert not any(key in states[m] for m in ("G", "D") for key in held)  # checkpoints unchanged
    model.to("meta")
    assert model.device.type == "meta"
    assert set(dict(model.held.named_buffers(remove_duplicate=False))) == held and not model.on_disk
    moments = [v for opt in model.optimizers().values() for st in opt.state.values() for k, v in st.items()
               if k != "step"]
    assert moments and all(v.device.type == "meta" for v in moments)
    assert all(t.device.type == "meta" for t in model.held.buffers())
    assert all(t.device.type == "meta" for m in model.modules().values() for t in m.state_dict().values())


def test_samples_come_back_on_the_cpu(tmp_path, device):
    run = mixgan.train(small_config(tmp_path, device, **{"train.steps": 2, "train.checkpoint_every": 2}))
    assert run.model.device.type == torch.device(device).type
    s = run.sample(10, component=3, seed=0)
    assert s.x.device.type == s.component.device.type == "cpu" and (s.component == 3).all()


def test_sampling_option_of_another_model_is_refused_in_one_line(tmp_path):
    run = mixgan.train(small_config(tmp_path, **{"train.steps": 2, "train.checkpoint_every": 2}))
    with pytest.raises(MixganError, match="model 'gmgan' takes no sampling option 'instances'") as err:
        run.sample(5, instances=[1])
    assert "\n" not in str(err.value)
    assert len(run.sample(5, instances=None).x) == 5  # an option left at None is no request


def test_training_steps_read_nothing_back_between_votes(tmp_path, monkeypatch, device):
    """The loop's only host reads are the NaN votes (every VOTE_EVERY steps and before each log
    line, grid and checkpoint) and the log means; on CUDA a step runs under sync-debug "error",
    so any hidden device->host sync inside a step fails the test."""
    from mixgan.models.base import GANModel
    from mixgan.training import dist, loop

    votes, means = [], []
    original_vote, original_mean, original_step = dist.min_over_ranks, loop.LossMonitor.mean, GANModel.train_step
    monkeypatch.setattr(dist, "min_over_ranks", lambda v: votes.append(1) or original_vote(v))
    monkeypatch.setattr(loop.LossMonitor, "mean", lambda self: means.append(1) or original_mean(self))

    def strict_step(self, next_batch, gen):
        if self.device.type != "cuda":
            return original_step(self, next_batch, gen)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original_step(self, next_batch, gen)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(GANModel, "train_step", strict_step)
    steps = 4 * loop.VOTE_EVERY
    mixgan.train(small_config(tmp_path, device, **{"train.steps": steps, "train.log_every": 2 * loop.VOTE_EVERY,
                                                   "train.sample_every": steps, "train.checkpoint_every": steps,
                                                   "train.ema": True}))
    assert len(votes) == 4 and len(means) == 2  # steps 16, 32, 48, 64; logs at 32 and 64


def test_nan_between_votes_is_named_at_its_own_step_before_any_checkpoint(tmp_path, monkeypatch):
    """The vote comes later than the NaN (at the checkpoint due at step 10), but names step 3 and
    writes no checkpoint of the poisoned weights."""
    from mixgan.models.base import GANModel

    original, calls = GANModel.train_step, {"n": 0}

    def poisoned(self, next_batch, gen):
        calls["n"] += 1
        logs = original(self, next_batch, gen)
        return {**logs, "loss_g": torch.tensor(float("inf"))} if calls["n"] == 3 else logs

    monkeypatch.setattr(GANModel, "train_step", poisoned)
    with pytest.raises(MixganError, match=r"loss_g became inf at step 3; stopped, no checkpoint had been written"):
        mixgan.train(small_config(tmp_path, **{"train.log_every": 100, "train.sample_every": 100}))
    assert calls["n"] == 10 and list_checkpoints(tmp_path / "run" / "checkpoints") == []


def test_compile_on_cuda_is_refused_in_one_line_and_kept_on_cpu(tmp_path):
    from mixgan.training.loop import _check_compile

    cfg = small_config(tmp_path, **{"train.compile": True})
    with pytest.raises(MixganError, match="train.compile=true is not supported on CUDA") as err:
        _check_compile(cfg, torch.device("cuda", 0))
    assert "\n" not in str(err.value)
    _check_compile(cfg, torch.device("cpu"))


def test_progress_task_reaches_the_cli_reporter(capsys):
    """A library task is announced by the CLI's reporter (one line at its start, one at its end)
    and is silent without a reporter."""
    import io

    from mixgan import progress
    from mixgan.cli.common import TaskReporter

    with progress.task("silent work", total=3) as t:
        t.advance(3)
    assert capsys.readouterr().err == ""
    out = io.StringIO()
    previous = progress.set_reporter(TaskReporter(out))
    try:
        with progress.task("training the reference classifier", total=10, eta=42) as t:
            t.advance(10)
    finally:
        progress.set_reporter(previous)
    lines = out.getvalue().splitlines()
    assert lines[0] == "mixgan: training the reference classifier (about 42 s)..."
    assert lines[-1].startswith("mixgan: training the reference classifier: done in ")


def test_resume_refuses_changed_data_unless_accepted(tmp_path):
    import numpy as np

    def write(n):
        rng = np.random.default_rng(n)
        np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (n, 1, 8, 8)).astype(np.uint8))

    write(40)
    cfg = small_config(tmp_path, **{"model.name": "gan", "data.dataset": f"npz:{tmp_path / 'd.npz'}", "model.width": 4,
                                    "train.steps": 10, "train.batch_size": 8, "train.eval_every": 0})
    mixgan.train(cfg)
    write(50)  # images added
    cfg.train.steps = 20
    with pytest.raises(MixganError, match=r"changed since step 10: the training set had \d+ items, now \d+; "
                                          r"pass --accept-changed-data"):
        mixgan.train(cfg, resume=True)
    assert mixgan.train(cfg, resume=True, accept_changed_data=True).step == 20


def test_grids_of_real_images_at_step_0_and_of_samples_at_a_sigterm_stop(tmp_path):
    import os
    import signal

    from mixgan.errors import Interrupted

    class Term:
        def start(self, initial, total): pass
        def close(self): pass
        def update(self, step, logs):
            if step == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    cfg = small_config(tmp_path, **{"model.name": "gan", "data.dataset": "digits", "model.width": 4,
                                    "train.steps": 50, "train.batch_size": 8, "train.eval_every": 0,
                                    "train.log_every": 100, "train.sample_every": 100, "train.checkpoint_every": 100})
    with pytest.raises(Interrupted):
        mixgan.train(cfg, progress=Term())
    samples = sorted(p.name for p in (tmp_path / "run" / "samples").glob("*.png"))
    assert samples == ["real.png", "step-000000.png", "step-000004.png"]  # the signal is seen after step 4
    from PIL import Image

    assert Image.open(tmp_path / "run" / "samples" / "real.png").size[0] > 8 * 10


def test_neighbour_search_is_cached_across_a_resume(tmp_path, monkeypatch):
    from mixgan.models import gmgan_encoder

    monkeypatch.setenv("MIXGAN_CACHE", str(tmp_path / "cache"))
    calls = []
    real_knn = gmgan_encoder.knn
    monkeypatch.setattr(gmgan_encoder, "knn", lambda *a, **k: calls.append(1) or real_knn(*a, **k))
    cfg = small_config(tmp_path, **{"data.dataset": "digits", "encoder.enabled": True, "encoder.neighbors": 3,
                                    "encoder.init": "scratch", "encoder.space": "pixels", "prior.components": 10,
                                    "model.width": 4, "train.steps": 4, "train.batch_size": 8, "train.eval_every": 0,
                                    "train.checkpoint_every": 4})
    mixgan.train(cfg)
    assert len(calls) == 1
    cfg.train.steps = 8
    mixgan.train(cfg, resume=True)
    assert len(calls) == 1  # the resumed start read the table back


@pytest.mark.parametrize("early_seconds, steps", [(300, [0, 1, 2, 3]), (0, [0, 3])])
def test_early_in_a_run_a_grid_follows_each_interval_of_wall_clock(tmp_path, monkeypatch, early_seconds, steps):
    from mixgan.training import loop

    monkeypatch.setattr(loop, "GRID_SECONDS", 0)  # every step is an interval past the last grid ...
    monkeypatch.setattr(loop, "GRID_EARLY_SECONDS", early_seconds)  # ... while the run is young
    cfg = small_config(tmp_path, **{"model.name": "gan", "train.steps": 3, "train.log_every": 100,
                                    "train.sample_every": 100, "train.checkpoint_every": 100, "model.width": 4})
    mixgan.train(cfg)
    assert sorted(p.name for p in (tmp_path / "run" / "samples").glob("step-*.png")) == [f"step-{s:06d}.png" for s in steps]
