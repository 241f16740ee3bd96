"""Settings are refused on type and range, settings files are read only when bounded and regular,
and a dry run refuses exactly what a run refuses, through the same checks."""
import os
import signal

import numpy as np
import pytest

from mixgan.config import MAX_SAMPLES, build_config, read_toml
from mixgan.errors import MixganError


def _one_line_refusal(code, err, start="mixgan: error: "):
    assert code == 2 and err.startswith(start) and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("text, message", [
    ("[train]\nsteps = true\n", "setting 'train.steps' expects int, got True"),
    ("[train]\nlr_g = true\n", "setting 'train.lr_g' expects float, got True"),
    ("[model]\nname = 5\n", "setting 'model.name' expects str, got 5"),
    ("[train]\nema = 1\n", "setting 'train.ema' expects bool, got 1"),
])
def test_a_toml_value_of_the_wrong_type_is_refused(tmp_path, text, message):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(MixganError, match=message):
        build_config(config_file=tmp_path / "c.toml")
    (tmp_path / "r.toml").write_text(text)  # a recipe is held to the same types
    with pytest.raises(MixganError, match=message):
        build_config({"recipe": str(tmp_path / "r.toml")})


@pytest.mark.parametrize("override", ["steps=true", "lr_g=yes", "train.ema=2", "batch_size=8.5"])
def test_a_set_value_of_the_wrong_type_is_refused(override):
    with pytest.raises(MixganError, match="expects"):
        build_config(overrides=[override])


@pytest.mark.parametrize("override, message", [
    ("train.beta1=5", "beta1 and beta2 must be in"),
    ("train.beta2=-0.1", "beta1 and beta2 must be in"),
    ("batch_size=1000000000", "'train.batch_size' is at most 65,536"),
    ("components=1000000000", "'prior.components' is at most 100,000"),
    ("model.width=10000000", "'model.width' is at most 8,192"),
    ("data.resolution=100000", "'data.resolution' is at most 1,024"),
    ("eval_samples=100000000", "'train.eval_samples' is at most 1,000,000"),
    ("lr_g=inf", "'train.lr_g' must be a finite number"),
    ("sigma=nan", "'prior.sigma' must be a finite number"),
])
def test_unbounded_settings_are_refused_in_one_line(cli, tmp_path, override, message):
    with pytest.raises(MixganError, match=message):
        build_config(overrides=[override])
    code, _, err = cli("train", "--dataset", "ring", "--set", override, "--out", tmp_path / "r", "--dry-run")
    _one_line_refusal(code, err)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ring run of 4 steps, checkpointed at 4."""
    from mixgan.cli import main

    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--dataset", "ring", "--model", "gan", "--steps", "4", "--set", "model.width=8",
                 "--set", "train.checkpoint_every=4", "--device", "cpu", "--out", str(run), "--quiet"]) == 0
    return run


def test_sample_n_is_bounded(cli, tmp_path, trained):
    code, _, err = cli("sample", trained, "--n", MAX_SAMPLES + 1, "--out", tmp_path / "s.npz", "--device", "cpu")
    _one_line_refusal(code, err, "mixgan: error: --n must be in 1..1,000,000")
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("dry", [True, False])
def test_an_output_path_that_cannot_be_made_is_one_line_before_anything_runs(cli, tmp_path, dry):
    (tmp_path / "file").write_text("x")
    for out, message in [(tmp_path / ("a" * 300), "a name of 300 bytes"),
                         (tmp_path / "file" / "run", "is a file, not a folder")]:
        code, out_text, err = cli("train", "--dataset", "ring", "--steps", "2", "--out", out, "--quiet",
                                  *(["--dry-run"] if dry else []))
        _one_line_refusal(code, err)
        assert message in err and out_text == ""  # refused before the recipe line of a run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_settings_file_must_be_a_small_regular_file(tmp_path):
    with pytest.raises(MixganError, match="config file /dev/zero is not a regular file"):
        read_toml("/dev/zero")
    with pytest.raises(MixganError, match="recipe /dev/zero is not a regular file"):
        build_config({"recipe": "/dev/zero"})
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n[train]\nsteps = 3\n")
    with pytest.raises(MixganError, match=f"big.toml is {big.stat().st_size} bytes; a settings file has at most 1048576"):
        build_config(config_file=big)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading a FIFO blocked"))
    signal.alarm(20)
    try:
        with pytest.raises(MixganError, match="fifo.toml is not a regular file"):
            build_config(config_file=fifo)
        with pytest.raises(MixganError, match="fifo.toml is not a regular file"):
            build_config({"recipe": str(fifo)})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", ["model wgan by a recipe", "arch transformer", "embedding clip", "dataset imagenet",
                                  "beta1 5", "resume below the trained step", "a non-empty out", "dcgan on points"])
def test_a_dry_run_refuses_what_a_run_refuses_with_the_same_line(cli, tmp_path, trained, case):
    recipe = tmp_path / "wgan.toml"
    recipe.write_text('[model]\nname = "wgan"\n')
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    out = ["--out", tmp_path / "new"]
    argv = {"model wgan by a recipe": ["--recipe", recipe, *out],
            "arch transformer": ["--set", "model.arch=transformer", *out],
            "embedding clip": ["--model", "icgan", "--set", "model.embedding=clip", *out],
            "dataset imagenet": ["--dataset", "imagenet", *out],
            "beta1 5": ["--set", "train.beta1=5", *out],
            "resume below the trained step": ["--resume", "--out", trained, "--steps", "2"],
            "a non-empty out": ["--out", tmp_path / "full"],
            "dcgan on points": ["--set", "model.arch=dcgan", *out]}[case]
    argv = ["train", "--dataset", "ring", *argv, "--quiet", "--device", "cpu"]
    dry = cli(*argv, "--dry-run")
    real = cli(*argv)
    _one_line_refusal(dry[0], dry[2])
    assert real[0] == 2 and real[2].splitlines()[-1] == dry[2].strip() and "Traceback" not in real[2]
    assert not (tmp_path / "new").exists() and sorted(p.name for p in (tmp_path / "full").iterdir()) == ["notes.txt"]


def _png(path, size, mode):
    from PIL import Image

    Image.new(mode, size, 128).save(path)


def test_a_dry_run_shows_the_resolution_and_channels_the_data_gives(cli, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    _png(folder / "a.png", (12, 12), "RGB")
    _png(folder / "b.png", (12, 12), "L")
    np.savez(tmp_path / "x.npz", x=np.zeros((5, 3, 16, 16), np.uint8))
    cases = [(["--dataset", "digits"], (8, 1)), (["--dataset", "folder", "--data-dir", folder], (12, 3)),
             (["--dataset", "folder", "--data-dir", folder, "--set", "data.resolution=32"], (32, 3)),
             (["--dataset", f"npz:{tmp_path / 'x.npz'}"], (16, 3)), (["--dataset", "ring"], (0, 0))]
    for argv, (side, channels) in cases:
        code, out, err = cli("train", *argv, "--model", "gan", "--out", tmp_path / "r", "--dry-run")
        assert code == 0, err
        rows = {line.split()[0]: line.split(None, 2)[1:] for line in out.splitlines()[2:]}
        assert rows["data.channels"][0] == str(channels), (argv, rows["data.channels"])
        assert rows["data.resolution"][0] == str(side), (argv, rows["data.resolution"])
        assert rows["data.channels"][1].startswith("auto: ")
    code, _, err = cli("train", "--dataset", "folder", "--data-dir", tmp_path / "none", "--dry-run")
    _one_line_refusal(code, err, "mixgan: error: folder: ")


def test_step_and_sample_caps_from_the_environment_lower_a_run_and_name_their_source(tmp_path, monkeypatch, cli):
    """MIXGAN_MAX_STEPS caps the steps a command trains (beyond a resumed run's start) and
    MIXGAN_MAX_SAMPLES the samples; the dry run shows the variable as the source; a bad value is one line."""
    monkeypatch.setenv("MIXGAN_MAX_STEPS", "3")
    monkeypatch.setenv("MIXGAN_MAX_SAMPLES", "50")
    code, out, _ = cli("train", "--dataset", "digits", "--dry-run")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["train.steps"] == ["3", "MIXGAN_MAX_STEPS"] and rows["train.eval_samples"] == ["50", "MIXGAN_MAX_SAMPLES"]
    run = tmp_path / "r"
    assert cli("train", "--dataset", "ring", "--out", run, "--quiet", "--device", "cpu")[0] == 0
    code, out, _ = cli("train", "--resume", "--out", run, "--steps", "8000", "--quiet")
    assert code == 0 and "steps: 6" in out
    monkeypatch.setenv("MIXGAN_MAX_STEPS", "many")
    code, _, err = cli("train", "--dataset", "ring", "--dry-run")
    assert code == 2 and err.strip() == "mixgan: error: MIXGAN_MAX_STEPS must be a positive integer, got 'many'"
