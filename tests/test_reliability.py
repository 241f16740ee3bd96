"""Crash-proof runs, code-free checkpoints and one clear line for every bad input."""
import gzip
import hashlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mixgan
from mixgan.errors import MixganError
from mixgan.training.checkpoint import list_checkpoints, read_checkpoint

from conftest import idx_bytes, small_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

# ---- SIGKILL at random moments, then --resume ------------------------------------------------

KILL_RUN = {"train.device": "cpu", "model.name": "gmgan",  # exact resume: the CPU is meant
            "data.dataset": "ring", "prior.components": 8, "model.width": 16,
            "train.batch_size": 32, "train.steps": 80, "train.log_every": 5, "train.sample_every": 1000,
            "train.checkpoint_every": 2}


def mixgan_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "mixgan", *map(str, args)]


def newest_step(folder: Path) -> int:
    found = list_checkpoints(folder)
    return int(found[-1].stem.split("-")[1]) if found else 0


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted_run(tmp_path):
    rng = random.Random(7)
    run = tmp_path / "killed"
    sets = [a for k, v in KILL_RUN.items() for a in ("--set", f"{k}={v}")]
    targets = sorted(rng.sample(range(10, 70, 10), 3))
    kills = 0
    for i, target in enumerate(targets + [None]):
        args = ["train", "--quiet", "--out", run] + (["--resume"] if i else sets)
        proc = subprocess.Popen(mixgan_cmd(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if target is None:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()[-2000:]
            break
        while proc.poll() is None and newest_step(run / "checkpoints") < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere inside a step or a checkpoint write
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        # every checkpoint record on disk reads back whole (tensors match their checksum)
        records = list_checkpoints(run / "checkpoints")
        assert records
        for record in records:
            read_checkpoint(record)
    assert kills == 3
    whole = mixgan.train(mixgan.build_config({**KILL_RUN, "out": str(tmp_path / "whole")}))
    final = [list_checkpoints(d / "checkpoints")[-1] for d in (run, whole.path)]
    assert [p.name for p in final] == ["step-000080.json"] * 2
    a, b = (load_file(str(p.with_suffix(".safetensors"))) for p in final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(l)["step"] for l in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 81, 5))  # cut lines dropped, no step logged twice
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]


# ---- NaN: clear stop, last good checkpoint intact ---------------------------------------------

def test_nan_from_the_cli_names_the_step_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    mixgan.train(small_config(tmp_path, **{"train.steps": 10}))
    before = (out / "checkpoints" / "step-000010.safetensors").read_bytes()
    res = subprocess.run(mixgan_cmd("train", "--quiet", "--resume", "--out", out, "--steps", 20, "--set", "lr_d=1e30",
                                    "--set", "lr_g=1e30"), env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert lines[0].startswith("mixgan: error: loss_") and "at step 11" in lines[0]
    assert "last good checkpoint (step 10)" in lines[0]
    assert (out / "checkpoints" / "step-000010.safetensors").read_bytes() == before
    assert mixgan.load(out).step == 10
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-000010.json"]


# ---- pickles with a payload are refused, never run ----------------------------------------------

class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("target", ["tensors", "record", "record-and-hash"])
def test_checkpoint_replaced_by_a_pickle_payload_is_refused(tmp_path, target, cli):
    run = mixgan.train(small_config(tmp_path, **{"train.steps": 10}))
    marker = tmp_path / "PWNED"
    blob = pickle.dumps(Payload(marker))
    record = list_checkpoints(run.path / "checkpoints")[-1]
    tensors = record.with_suffix(".safetensors")
    if target == "record":
        record.write_bytes(blob)
    else:
        tensors.write_bytes(blob)
    if target == "record-and-hash":  # the checksum agrees, so the loader must parse the pickle itself
        meta = json.loads(record.read_text())
        meta["sha256"] = hashlib.sha256(blob).hexdigest()
        record.write_text(json.dumps(meta))
    with pytest.raises(MixganError, match="step-000010"):
        read_checkpoint(record)
    code, _, err = cli("sample", run.path, "--n", 5, "--out", tmp_path / "s.npz")
    assert code == 2 and err.startswith("mixgan: error:") and err.count("\n") == 1
    assert not marker.exists()


def test_cifar_batch_with_a_payload_is_refused_by_the_cli(tmp_path, cli, monkeypatch):
    marker = tmp_path / "PWNED"
    folder = tmp_path / "cifar"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(Payload(marker)))
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("train", "--dataset", "cifar10", "--data-dir", folder, "--steps", 1, "--quiet")
    assert code == 2 and "refused global" in err and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "runs").exists()


# ---- bad settings and bad files: one line, exit 2, nothing touched -------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    path.write_bytes(idx_bytes(array))


def idx_folder(folder: Path, n: int = 12) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return folder


def png(path: Path, size: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((size, size), 128, np.uint8)).save(path, format="PNG")


def bad_truncated(d):
    f = idx_folder(d / "data") / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    return ["--dataset", "fashion-mnist", "--data-dir", d / "data"], "truncated"


def bad_gzip_truncated(d):
    f = idx_folder(d / "data") / "train-images-idx3-ubyte"
    f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes())[:-30])
    f.unlink()
    return ["--dataset", "fashion-mnist", "--data-dir", d / "data"], "corrupt gzip"


def bad_mislabelled(d):  # a labels file where the images should be
    folder = idx_folder(d / "data")
    (folder / "train-images-idx3-ubyte").write_bytes((folder / "train-labels-idx1-ubyte").read_bytes())
    return ["--dataset", "fashion-mnist", "--data-dir", folder], "expected a 3-dimensional IDX file"


def bad_counts(d):
    folder = idx_folder(d / "data")
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    return ["--dataset", "fashion-mnist", "--data-dir", folder], "12 images but t10k-labels-idx1-ubyte has 5"


def bad_magic(d):
    folder = idx_folder(d / "data")
    png(folder / "train-images-idx3-ubyte", 28)
    return ["--dataset", "fashion-mnist", "--data-dir", folder], "wrong IDX magic"


def bad_label_value(d):
    folder = idx_folder(d / "data")
    write_idx(folder / "train-labels-idx1-ubyte", np.full(12, 200, np.uint8))
    return ["--dataset", "fashion-mnist", "--data-dir", folder], "label 200 outside 0..9"


def bad_image_size(d):
    (d / "imgs").mkdir()
    for i in range(4):
        png(d / "imgs" / f"{i}.png", 16)
    return (["--dataset", "folder", "--data-dir", d / "imgs", "--set", "data.resolution=9"],
            "conv networks need an image side of s0 * 2^n")


def bad_empty_folder(d):
    (d / "imgs").mkdir()
    (d / "imgs" / "notes.txt").write_text("no images here")
    return ["--dataset", "folder", "--data-dir", d / "imgs"], "holds no PNG, JPEG or WebP images"


def bad_image_bytes(d):
    (d / "imgs").mkdir()
    (d / "imgs" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (d / "imgs" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    return ["--dataset", "folder", "--data-dir", d / "imgs"], "none of the 2 image files"


def bad_toml(d):
    (d / "bad.toml").write_text("[train\nsteps = 3\n")
    return ["--config", d / "bad.toml"], "not valid TOML"


CASES = {
    "K < 1": lambda d: (["--components", 0], "components must be >= 1"),
    "K not a multiple of N": lambda d: (["--model", "gmgan-supervised", "--components", 15],
                                        "multiple of the 10 classes, got 15"),
    "c = 0": lambda d: (["--set", "c=0"], "c must be > 0"),
    "c < 0": lambda d: (["--set", "prior.c=-1.5"], "c must be > 0"),
    "unknown model": lambda d: (["--model", "wgan"], "unknown model 'wgan'"),
    "unknown dataset": lambda d: (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    "unknown setting": lambda d: (["--set", "train.stepz=3"], "unknown setting 'train.stepz'"),
    "resume another model": lambda d: (["--resume", "--out", d / "run", "--model", "gan"],
                                       "model.name='gmgan', not 'gan'"),
    "resume a non-run": lambda d: (["--resume", "--out", d / "data-file"], "is not a mixgan run"),
    "out under a file": lambda d: (["--out", d / "data-file" / "run"], "cannot write to output folder"),
    "out in /proc": lambda d: (["--out", "/proc/mixgan-run"], "cannot write to output folder"),
    "out is an existing run": lambda d: (["--out", d / "run"], "already exists"),
    "truncated IDX": bad_truncated,
    "truncated gzip IDX": bad_gzip_truncated,
    "mislabelled IDX": bad_mislabelled,
    "IDX counts differ": bad_counts,
    "IDX wrong magic": bad_magic,
    "IDX label out of range": bad_label_value,
    "image side no network fits": bad_image_size,
    "empty folder": bad_empty_folder,
    "only corrupt images": bad_image_bytes,
    "bad TOML": bad_toml,
}
if not torch.cuda.is_available():  # on a GPU machine this input is valid
    CASES["cuda without a GPU"] = lambda d: (["--device", "cuda"], "no CUDA device is available")


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("existing")
    mixgan.train(small_config(base, **{"train.steps": 10}))
    return base / "run"


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, tmp_path, existing_run, cli, monkeypatch):
    import shutil

    shutil.copytree(existing_run, tmp_path / "run")
    (tmp_path / "data-file").write_text("a regular file\n")
    argv, message = CASES[case](tmp_path)
    monkeypatch.chdir(tmp_path)  # a default run directory would appear here
    before = tree_digest(tmp_path)
    code, out, err = cli("train", "--steps", 2, *argv)
    assert code == 2, (out, err)
    assert err.startswith("mixgan: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
    assert tree_digest(tmp_path) == before


def test_bad_setting_from_a_real_process_exits_2_without_traceback(tmp_path):
    res = subprocess.run(mixgan_cmd("train", "--components", 0), cwd=tmp_path, env=ENV, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr == "mixgan: error: components must be >= 1, got 0\n"
    assert list(tmp_path.iterdir()) == []


# ---- TensorBoard -------------------------------------------------------------------------------

def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path, cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "ring", "--steps", 10, "--set", "width=16", "--set", "log_every=5",
                       "--batch-size", 32, "--out", out, "--tensorboard", "--quiet")
    assert code == 0, err
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].parent.parent == out
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    stats = [json.loads(l) for l in (out / "stats.jsonl").read_text().splitlines()]
    for tag in ("loss_d", "loss_g", "it_per_s"):
        scalars = acc.Scalars(tag)
        assert [s.step for s in scalars] == [5, 10]
        assert [s.value for s in scalars] == pytest.approx([r[tag] for r in stats], rel=1e-5)


def test_tensorboard_missing_is_one_line_and_leaves_no_run(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "ring", "--steps", 2, "--set", "width=16", "--out", out,
                       "--tensorboard", "--quiet")
    assert code == 2 and err == ("mixgan: error: --tensorboard needs the tensorboard package: "
                                 "pip install 'mixgan[tensorboard]'\n")
    assert not out.exists()  # nothing to clean up before a rerun with tensorboard installed
