"""A run directory as a database: one writer, damage named, hand edits refused, every failure one
line that leaves nothing behind, SIGINT/SIGTERM checkpoint.

Most tests copy one small ring run (60 steps, checkpoints at 20, 40 and 60) and probe it through
the CLI in-process; the signal and lock tests fork real processes (forked, so torch is not
imported again).
"""
import errno
import hashlib
import json
import os
import re
import shutil
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
from mixgan import io as mio
from mixgan.training.checkpoint import list_checkpoints, read_checkpoint

from conftest import small_config

RING = {"train.steps": 60, "train.checkpoint_every": 20, "train.keep_checkpoints": 3, "train.sample_every": 60,
        "train.log_every": 10}


@pytest.fixture(scope="module")
def rbase(tmp_path_factory):
    base = tmp_path_factory.mktemp("rbase")
    mixgan.train(small_config(base, **RING))
    return base / "run"


@pytest.fixture
def run(rbase, tmp_path):
    dst = tmp_path / "k"
    shutil.copytree(rbase, dst)
    return dst


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".writer")}


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def _train_in_child(argv: list[str], err: str) -> None:
    """A forked ``mixgan`` process (no second import of torch); stderr into ``err``."""
    from mixgan.cli import main

    sys.stderr = open(err, "w")
    code = main(argv)
    sys.stderr.flush()
    os._exit(code)


# ---- 1, 9: damage is named, never hidden ------------------------------------------------------

def flip(ck: Path) -> str:
    t = ck / "step-000060.safetensors"
    data = bytearray(t.read_bytes())
    data[-100] ^= 0xFF
    t.write_bytes(bytes(data))
    return "hash mismatch"


def truncate(ck: Path) -> str:
    t = ck / "step-000060.safetensors"
    t.write_bytes(t.read_bytes()[:5000])
    return "truncated: 5000 bytes"


def truncate_with_matching_hash(ck: Path) -> str:
    truncate(ck)
    record = json.loads((ck / "step-000060.json").read_text())
    record["sha256"] = hashlib.sha256((ck / "step-000060.safetensors").read_bytes()).hexdigest()
    (ck / "step-000060.json").write_text(json.dumps(record))
    return "edited record"


def delete_sidecar(ck: Path) -> str:
    (ck / "step-000060.json").unlink()
    return "missing sidecar"


def edit_step(ck: Path) -> str:
    record = json.loads((ck / "step-000060.json").read_text())
    record["step"] = 100
    (ck / "step-000060.json").write_text(json.dumps(record))
    return "edited record"


DAMAGE = {"flipped bytes": flip, "truncated": truncate, "truncated, hash matching": truncate_with_matching_hash,
          "sidecar deleted": delete_sidecar, "step edited 60 -> 100": edit_step}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_newest_checkpoint_is_named_marked_by_info_and_moved_aside_by_resume(damage, run, cli, tmp_path):
    ck = run / "checkpoints"
    why = DAMAGE[damage](ck)
    damaged = {p.name: p.read_bytes() for p in ck.glob("step-000060.*")}

    code, out, err = cli("sample", run, "--n", 5, "--out", tmp_path / "a.npz")
    assert code == 0
    line = one_line(err)
    assert line.startswith("mixgan: warning: skipped damaged checkpoint") and "step-000060" in line
    assert why in line and line.endswith("using step 40 instead")
    assert mixgan.load(run).step == 40

    code, out, _ = cli("info", run)
    assert code == 0 and "steps:    40 of 60" in out
    assert any(l.startswith("damaged:") and "step 60" in l and why in l for l in out.splitlines())

    code, _, err = cli("train", "--resume", "--out", run, "--steps", 60, "--quiet")
    assert code == 0 and "moved aside as" in one_line(err)
    assert {p.name[:-len(".damaged")]: p.read_bytes() for p in ck.glob("*.damaged")} == damaged
    assert read_checkpoint(ck / "step-000060.json")[1]["step"] == 60  # trained again from 40, intact


# ---- 2: one writer ----------------------------------------------------------------------------

def _hold_lock(run: str, ready) -> None:
    """A forked writer: holds the run's lock with a checkpoint half-written, until killed."""
    from mixgan.training.rundir import RunLock

    lock = RunLock(Path(run))
    lock.acquire()
    (Path(run) / "checkpoints" / ".step-000080.safetensors.tmp-1").write_bytes(b"half")
    ready.set()
    time.sleep(120)
    os._exit(0)


def test_second_writer_is_refused_naming_the_holder_and_a_killed_holder_blocks_nobody(run, cli, tmp_path):
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    holder = fork.Process(target=_hold_lock, args=(str(run), ready))
    holder.start()
    try:
        assert ready.wait(60)
        code, _, err = cli("train", "--resume", "--out", run, "--steps", 80, "--quiet")
        assert code == 2 and f"pid {holder.pid}" in one_line(err) and "another mixgan process" in err
        assert (run / "checkpoints" / ".step-000080.safetensors.tmp-1").exists()  # the writer's file survives
        code, _, _ = cli("sample", run, "--n", 5, "--out", tmp_path / "a.npz")  # readers need no lock
        assert code == 0
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    assert (run / ".writer.lock").exists()  # left behind by the kill; the OS released the lock itself
    code, _, err = cli("train", "--resume", "--out", run, "--steps", 80, "--quiet")
    assert code == 0, err
    assert not leftovers(run)
    steps = [r["step"] for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines())]
    assert steps == sorted(set(steps)) and steps[-1] == 80


def test_two_resumes_at_once_one_trains_the_other_is_refused(run, tmp_path):
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    argv = ["train", "--resume", "--out", str(run), "--steps", "200", "--quiet"]
    procs = [fork.Process(target=_train_in_child, args=(argv, str(tmp_path / f"err{i}"))) for i in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    results = sorted((proc.exitcode, (tmp_path / f"err{i}").read_text()) for i, proc in enumerate(procs))
    assert [code for code, _ in results] == [0, 2], results
    assert "being written by another mixgan process (pid " in one_line(results[1][1])
    steps = [r["step"] for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines())]
    assert steps == list(range(10, 201, 10))  # every step logged once, by one writer


# ---- 3, 9: --resume refuses what would lose or mix data ---------------------------------------

def test_resume_without_checkpoints_but_with_history_refuses_and_keeps_it(run, cli):
    shutil.rmtree(run / "checkpoints")
    before = digest(run)
    code, _, err = cli("train", "--resume", "--out", run, "--steps", 70, "--quiet")
    assert code == 2 and "no intact checkpoint (the checkpoints folder is missing)" in one_line(err)
    assert digest(run) == before


def test_resume_with_steps_below_the_trained_step_refuses_and_keeps_the_config(run, cli):
    before = digest(run)
    code, _, err = cli("train", "--resume", "--out", run, "--steps", 30, "--quiet")
    assert code == 2 and "has trained 60 steps; --steps 30 is below that" in one_line(err)
    assert digest(run) == before


@pytest.mark.parametrize("key,old,new", [("sigma", "0.1", "0.5"), ("lr_g", "0.001", "0.002")])
def test_config_edited_since_the_checkpoint_is_refused_unless_set(key, old, new, run, cli):
    text = (run / "config.toml").read_text()
    edited = re.sub(rf"^{key} = {old}\b", f"{key} = {new}", text, flags=re.M)
    assert edited != text
    (run / "config.toml").write_text(edited)
    before = digest(run)
    code, _, err = cli("train", "--resume", "--out", run, "--steps", 70, "--quiet")
    assert code == 2 and f"was edited since the checkpoint of step 60 ({'prior' if key == 'sigma' else 'train'}.{key}: " \
                         f"{old} -> {new})" in one_line(err)
    assert digest(run) == before
    code, _, err = cli("train", "--resume", "--out", run, "--steps", 70, "--set", f"{key}={new}", "--quiet")
    if key == "sigma":  # a run's prior is fixed
        assert code == 2 and "trained with prior.sigma=0.1, not 0.5" in one_line(err)
    else:
        assert code == 0, err
        assert json.loads((run / "checkpoints" / "step-000070.json").read_text())["config"]["train"]["lr_g"] == 0.002


# ---- 4, 8: numbers in range, and one line for each of these inputs -----------------------------

def bad_args(run: Path, tmp: Path) -> dict:
    return {
        "sample --scale nan": (["sample", run, "--n", 5, "--out", tmp / "a.npz", "--scale", "nan"], "--scale must be"),
        "sample --scale inf": (["sample", run, "--n", 5, "--out", tmp / "a.npz", "--scale", "inf"], "--scale must be"),
        "sample --grid in a missing folder": (["sample", run, "--n", 5, "--out", tmp / "a.npz", "--grid",
                                               tmp / "nodir" / "g.png"], "does not exist"),
        "sample --seed 2^70": (["sample", run, "--n", 5, "--out", tmp / "a.npz", "--seed", 2 ** 70],
                               "--seed must be in 0..2^63-1"),
        "train --seed 2^70": (["train", "--dataset", "ring", "--seed", 2 ** 70, "--out", tmp / "new"],
                              "seed must be in 0..2^63-1"),
        "cluster --epochs 0": (["cluster", run, "--epochs", 0, "--quiet"], "--epochs must be >= 1"),
        "cluster --per-component 0": (["cluster", run, "--per-component", 0, "--quiet"], "--per-component must be >= 1"),
        "--config naming a folder": (["train", "--config", tmp, "--out", tmp / "new"], "is not a file"),
        "train --steps 0": (["train", "--dataset", "ring", "--steps", 0, "--out", tmp / "new"], "steps must be >= 1"),
    }


@pytest.mark.parametrize("case", ["sample --scale nan", "sample --scale inf", "sample --grid in a missing folder",
                                  "sample --seed 2^70", "train --seed 2^70", "cluster --epochs 0",
                                  "cluster --per-component 0", "--config naming a folder", "train --steps 0"])
def test_out_of_range_arguments_are_one_line_and_write_nothing(case, run, cli, tmp_path):
    argv, message = bad_args(run, tmp_path)[case]
    before = digest(tmp_path)
    code, out, err = cli(*argv)
    assert code == 2 and message in one_line(err)
    assert digest(tmp_path) == before and not (tmp_path / "new").exists()


def test_report_refuses_a_malformed_metrics_file_in_one_line(run, cli):
    for text, message in [('{"fid": ', "is not readable JSON"), ("[1, 2]", "holds list, not a JSON object")]:
        (run / "metrics.json").write_text(text)
        code, _, err = cli("report", run)
        assert code == 2 and message in one_line(err)


def test_stats_line_that_is_json_but_not_an_object_is_skipped(run, cli):
    with open(run / "stats.jsonl", "a") as fh:
        fh.write("[1, 2]\n7\n")
    code, out, _ = cli("info", run)
    assert code == 0 and "last log: step=60" in out
    assert cli("report", run)[0] == 0
    code, _, err = cli("train", "--resume", "--out", run, "--steps", 70, "--quiet")
    assert code == 0, err
    assert [json.loads(l)["step"] for l in (run / "stats.jsonl").read_text().splitlines()] == list(range(10, 71, 10))


# ---- 6: the number of classes is bounded by the data ------------------------------------------

def test_one_huge_label_is_refused_before_anything_is_allocated(tmp_path, cli):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", x=rng.random((100, 2)).astype("float32"), y=np.array([0] * 99 + [10 ** 9]))
    code, _, err = cli("train", "--dataset", f"npz:{tmp_path / 'big.npz'}", "--model", "cgan", "--steps", 2,
                       "--out", tmp_path / "run", "--quiet")
    assert code == 2 and "labels must be 0..N-1" in one_line(err) and "largest label is 1000000000" in err
    assert not (tmp_path / "run").exists()


# ---- 7: errors come before the run directory exists --------------------------------------------

@pytest.mark.parametrize("model", ["gan", "gmgan"])
def test_a_one_image_folder_is_refused_before_a_run_directory_exists(model, tmp_path, cli):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "imgs" / "a.png")
    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "folder", "--data-dir", tmp_path / "imgs", "--model", model,
                       "--steps", 2, "--out", out, "--quiet")
    assert code == 2 and re.search(r"training set of folder is empty|has 1 readable image; need at least 2", one_line(err))
    assert not out.exists()


# ---- 5: a full disk or a read-only folder: one line, nothing left behind ------------------------

def fail_writes(monkeypatch, code: int, where=lambda path: True, after: int = 0):
    """Make every write into a file whose path passes ``where`` fail with ``code`` once ``after``
    writes have gone through (a half-written file first, as a filling disk does)."""
    real, seen = mio._write, {"n": 0}

    def write(fd, data):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if where(path):
            seen["n"] += 1
            if seen["n"] > after:
                real(fd, bytes(data[:len(data) // 2]))
                raise OSError(code, os.strerror(code))
        return real(fd, data)

    monkeypatch.setattr(mio, "_write", write)


def test_full_disk_at_a_new_run_is_one_line_and_leaves_no_directory(tmp_path, cli, monkeypatch):
    fail_writes(monkeypatch, errno.ENOSPC)
    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "ring", "--steps", 20, "--set", "width=16", "--out", out, "--quiet")
    line = one_line(err)
    assert code == 2 and line.startswith(f"mixgan: error: cannot write {out}/") and line.endswith("(No space left on device)")
    assert not out.exists()
    monkeypatch.undo()
    assert cli("train", "--dataset", "ring", "--steps", 2, "--set", "width=16", "--out", out, "--quiet")[0] == 0


def test_full_disk_during_training_keeps_the_last_checkpoint_and_no_temporary_file(run, cli, monkeypatch):
    fail_writes(monkeypatch, errno.ENOSPC, where=lambda p: p.endswith("step-000080.safetensors.tmp-%d" % os.getpid()))
    code, _, err = cli("train", "--resume", "--out", run, "--steps", 100, "--quiet")
    assert code == 2
    assert one_line(err) == f"mixgan: error: cannot write {run / 'checkpoints' / 'step-000080.safetensors'} " \
                            "(No space left on device)"
    assert not leftovers(run)
    monkeypatch.undo()
    assert mixgan.load(run).step == 60
    assert cli("train", "--resume", "--out", run, "--steps", 100, "--quiet")[0] == 0


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_run_folder_is_one_line_for_resume_sample_grid_and_report(code, run, cli, monkeypatch, tmp_path):
    before = digest(run)
    fail_writes(monkeypatch, code, where=lambda p: p.startswith(str(tmp_path)))
    reason = os.strerror(code)
    for argv in (["train", "--resume", "--out", run, "--steps", 70, "--quiet"], ["report", run],
                 ["sample", run, "--n", 5, "--out", tmp_path / "a.npz", "--grid", tmp_path / "g.png"]):
        status, _, err = cli(*argv)
        line = one_line(err)
        assert status == 2 and line.startswith("mixgan: error: cannot write ") and line.endswith(f"({reason})"), line
    assert digest(run) == before and not leftovers(tmp_path)


def test_atomic_write_removes_its_temporary_file_on_any_failure(tmp_path, monkeypatch):
    fail_writes(monkeypatch, errno.ENOSPC)
    with pytest.raises(mixgan.MixganError, match=r"cannot write .*a.bin \(No space left on device\)"):
        mio.atomic_write_bytes(tmp_path / "a.bin", b"x" * 1000)
    monkeypatch.undo()

    def interrupted(fd, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(mio, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mio.atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (skipped where this machine does not allow mounting)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_full_tmpfs_is_one_line_and_leaves_nothing_behind(small_tmpfs, run, cli):
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024 - 40 * 1024))  # about 40 KB left: room for the config, not a checkpoint
    out = small_tmpfs / "run"
    code, _, err = cli("train", "--dataset", "ring", "--steps", 20, "--set", "width=16", "--out", out, "--quiet")
    assert code == 2 and "(No space left on device)" in one_line(err) and str(small_tmpfs) in err
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler"]
    code, _, err = cli("sample", run, "--n", 20000, "--out", small_tmpfs / "s.npz")
    assert code == 2 and "(No space left on device)" in one_line(err)
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler"]


# ---- 10: default run names -------------------------------------------------------------------

def test_default_run_names_started_in_the_same_second_differ(tmp_path, cli, monkeypatch):
    from mixgan.training import rundir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rundir.time, "strftime", lambda fmt: "20260101-000000")
    for _ in range(2):
        code, _, err = cli("train", "--dataset", "ring", "--steps", 2, "--set", "width=16", "--quiet")
        assert code == 0, err
    assert len(list((tmp_path / "runs").iterdir())) == 2


# ---- 11: SIGINT and SIGTERM checkpoint ---------------------------------------------------------

INTERRUPT_RUN = {"train.steps": 40, "train.checkpoint_every": 20, "train.sample_every": 1000, "train.log_every": 10}


def test_sigint_saves_a_checkpoint_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path, cli, monkeypatch):
    from mixgan.training import loop

    add = loop.LossMonitor.add

    def add_and_interrupt(self, step, out):
        add(self, step, out)
        if step == 22:  # inside step 23: the loop finishes it, then stops
            os.kill(os.getpid(), signal.SIGINT)

    sets = [a for k in INTERRUPT_RUN for a in ("--set", f"{k}={INTERRUPT_RUN[k]}")]
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under a shell's background job
    monkeypatch.setattr(loop.LossMonitor, "add", add_and_interrupt)
    code, _, err = cli("train", "--dataset", "ring", "--components", 8, "--batch-size", 32, "--set", "width=16",
                       "--device", "cpu", *sets, "--out", out, "--quiet")
    assert code == 130
    assert one_line(err) == f"mixgan: interrupted at step 23; checkpoint saved, continue with --resume --out {out}"
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-000020.json", "step-000023.json"]
    assert signal.getsignal(signal.SIGINT) is before  # restored
    monkeypatch.setattr(loop.LossMonitor, "add", add)
    code, _, err = cli("train", "--resume", "--out", out, "--quiet")
    assert code == 0, err
    whole = mixgan.train(small_config(tmp_path, **{**INTERRUPT_RUN, "out": str(tmp_path / "whole")}))
    a, b = (load_file(str(d / "checkpoints" / "step-000040.safetensors")) for d in (out, whole.path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_from_a_scheduler_saves_a_checkpoint_and_exits_143(tmp_path):
    import multiprocessing

    out = tmp_path / "run"
    sets = [a for k, v in {**INTERRUPT_RUN, "train.steps": 100_000, "model.width": 16}.items() for a in ("--set", f"{k}={v}")]
    argv = ["train", "--dataset", "ring", "--device", "cpu", "--quiet", "--out", str(out), *sets]
    proc = multiprocessing.get_context("fork").Process(target=_train_in_child, args=(argv, str(tmp_path / "err")))
    proc.start()
    deadline = time.time() + 120
    while not list_checkpoints(out / "checkpoints") and time.time() < deadline and proc.is_alive():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(timeout=120)
    err = (tmp_path / "err").read_text()
    assert proc.exitcode == 143, err
    line = one_line(err)
    step = int(line.split("interrupted at step ")[1].split(";")[0])
    assert line == f"mixgan: interrupted at step {step}; checkpoint saved, continue with --resume --out {out}"
    assert read_checkpoint(list_checkpoints(out / "checkpoints")[-1])[1]["step"] == step > 20


def _interrupted_rank(rank: int, world: int, store: str, out: str, results: str) -> None:
    """One gloo rank of a CPU run; rank 1 alone gets SIGTERM inside step 5."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import torch.distributed as dist

    from mixgan.errors import Interrupted
    from mixgan.training import loop

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    if rank == 1:
        add = loop.LossMonitor.add

        def add_and_signal(self, step, logs):
            add(self, step, logs)
            if step == 4:
                os.kill(os.getpid(), signal.SIGTERM)

        loop.LossMonitor.add = add_and_signal
    try:
        mixgan.train(mixgan.build_config({**{k: v for k, v in INTERRUPT_RUN.items()}, "train.device": "cpu",
                                          "data.dataset": "ring", "model.width": 16, "train.batch_size": 32,
                                          "out": out}))
        result = "finished"
    except Interrupted as exc:
        result = str(exc.step)
    Path(results, str(rank)).write_text(result)
    dist.destroy_process_group()


@pytest.mark.slow  # two processes
def test_sigterm_on_one_rank_stops_every_rank_after_the_same_step_with_a_checkpoint(tmp_path):
    import torch.multiprocessing as mp

    (tmp_path / "results").mkdir()
    out = tmp_path / "run"
    mp.start_processes(_interrupted_rank, args=(2, str(tmp_path / "store"), str(out), str(tmp_path / "results")),
                       nprocs=2, start_method="fork")  # forked: no second import of torch
    steps = {p.name: p.read_text() for p in (tmp_path / "results").iterdir()}
    assert steps == {"0": "10", "1": "10"}  # agreed at the first vote after the signal (the log line of step 10)
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-000010.json"]
    assert read_checkpoint(out / "checkpoints" / "step-000010.json")[1]["step"] == 10
