"""Distributed data parallel on CPU with gloo: two real processes, identical weights, one run.

The spawn test joins the process group itself (file:// rendezvous) and calls the library's
``train`` on every rank; the torchrun test goes through the CLI exactly as a user would.
"""
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from mixgan.training.checkpoint import list_checkpoints
from mixgan.training.loop import BatchStream

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]

# Small settings every model trains with; per-model extras where a model needs them. The CPU is
# meant throughout (gloo, byte-identical weights), also where MIXGAN_TEST_DEVICE names a GPU.
BASE = {"train.device": "cpu", "data.dataset": "digits", "encoder.enabled": False, "model.width": 8, "prior.latent_dim": 8,
        "prior.components": 10,
        "train.steps": 6, "train.batch_size": 16, "train.log_every": 3, "train.sample_every": 100,
        "train.checkpoint_every": 3}
EXTRA = {
    "gmgan": {"encoder.enabled": False, "prior.dynamic": True, "prior.covariance": "full", "train.ema": True, "train.d_steps": 2},
    "gan": {"model.spectral_norm": True, "model.loss": "hinge"},
    "gmgan-supervised": {"prior.components": 20},
    "icgan": {"model.embedding": "pixels"},
    "icgan-class": {"model.embedding": "pixels"},
}
RING = {"train.device": "cpu", "model.name": "gmgan", "data.dataset": "ring", "prior.components": 8, "model.width": 16,
        "train.batch_size": 32, "train.steps": 20, "train.log_every": 5, "train.sample_every": 10,
        "train.checkpoint_every": 10, "train.lr_decay": "none"}  # a linear decay would change when the run is extended


def digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _worker(rank: int, world: int, store: str, jobs: list, out: str) -> None:
    """One rank: join the group, train every job, write the digest of each of its modules."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import torch.distributed as dist

    import mixgan
    from mixgan.training import loop

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    built, poison = [], {}
    original = loop.build_model

    def build(*a, **k):
        model = built.append(original(*a, **k)) or built[-1]
        if poison.get("rank") == rank:  # this rank alone sees a NaN loss at one step
            step, clean = [0], model.train_step

            def train_step(*args):
                step[0] += 1
                logs = clean(*args)
                return {**logs, "loss_d": torch.tensor(float("nan"))} if step[0] == poison["step"] else logs

            model.train_step = train_step
        return model

    loop.build_model = build
    result = {}
    for name, values in jobs:
        values = dict(values)
        resume_to, resume_only = values.pop("resume_to", None), values.pop("resume", False)
        poison = values.pop("poison", {})
        if "default_out" in values:  # each rank would name the run after itself: only rank 0's name may be used
            folder = Path(values.pop("default_out"))
            loop.default_run_dir = lambda cfg: folder / f"named-by-rank{rank}"
        cfg = mixgan.build_config(values)
        try:
            loop.train(cfg, resume=resume_only)
        except loop.TrainingDiverged as exc:
            result[name] = {"error": str(exc)}
            continue
        if resume_to:
            cfg.train.steps = resume_to
            loop.train(cfg, resume=True)
        model = built[-1]
        result[name] = {k: digest(m) for k, m in model.modules().items()}
        result[name]["wrapped"] = type(model.G_train).__name__
        result.setdefault("out", {})[name] = cfg.out
    dist.destroy_process_group()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def run_ranks(tmp_path: Path, jobs: list, world: int = 2) -> list[dict]:
    mp.start_processes(_worker, args=(world, str(tmp_path / "store"), jobs, str(tmp_path)), nprocs=world,
                       start_method="spawn")
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


def checkpoint_digest(run: Path, module: str) -> str:
    tensors = load_file(str(list_checkpoints(run / "checkpoints")[-1].with_suffix(".safetensors")))
    h = hashlib.sha256()
    for name, t in sorted((k[len(module) + 1:], v) for k, v in tensors.items() if k.startswith(module + ".")):
        h.update(name.encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def test_shards_are_disjoint_and_cover_the_data():
    n, world = 103, 3
    streams = [BatchStream(n, 10, seed=0, rank=r, world_size=world) for r in range(world)]
    epoch = [torch.cat([s(b) for b in range(4)])[:s.size] for s in streams]  # first pass of each shard
    seen = torch.cat(epoch)
    assert len(seen) == n and len(set(seen.tolist())) == n
    assert all(set(e.tolist()).isdisjoint(f.tolist()) for i, e in enumerate(epoch) for f in epoch[i + 1:])


def test_every_model_trains_under_ddp_with_identical_weights(tmp_path):
    from mixgan.models import MODELS

    jobs = [(name, {**BASE, "model.name": name, **EXTRA.get(name, {}), "out": str(tmp_path / name)})
            for name in MODELS]
    jobs.append(("resumed", {**BASE, "model.name": "gmgan", **EXTRA["gmgan"], "train.steps": 3,
                             "resume_to": 6, "out": str(tmp_path / "resumed")}))
    from mixgan.data.pack import pack

    pack("digits", tmp_path / "digit-shards", shard_size=500)
    jobs.append(("shards", {**BASE, "model.name": "gan", "data.dataset": f"shards:{tmp_path / 'digit-shards'}",
                            "data.workers": 0, "train.eval_every": 0, "out": str(tmp_path / "shards")}))
    jobs.append(("nan", {**BASE, "model.name": "gmgan", "poison": {"rank": 1, "step": 5},
                         "out": str(tmp_path / "nan")}))
    ranks = run_ranks(tmp_path, jobs)
    # a NaN on rank 1 alone stops both ranks at that step (no rank left waiting in a collective)
    assert ranks[1].pop("nan")["error"].startswith("loss_d became nan at step 5; stopped, the last good "
                                                  "checkpoint (step 3)")
    assert ranks[0].pop("nan")["error"].startswith("a loss on another process became non-finite at step 5")
    jobs.pop()
    for name, _ in jobs:
        a, b = ranks[0][name], ranks[1][name]
        assert a["wrapped"] == "DistributedDataParallel", name
        assert a == b, f"{name}: ranks differ in {[k for k in a if a[k] != b.get(k)]}"  # every module, G_ema too
        for module in ("G", "D"):
            # the ranks saw different shards: only averaged gradients keep them equal
            assert a[module] == b[module], f"{name}: {module} differs between ranks"
            assert checkpoint_digest(tmp_path / name, module) == a[module], name
        stats = [json.loads(l)["step"] for l in (tmp_path / name / "stats.jsonl").read_text().splitlines()]
        assert stats == [3, 6], name  # rank 0 alone logs
    assert ranks[0]["resumed"] == ranks[0]["gmgan"]  # resume under DDP repeats the uninterrupted run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = TORCHRUN + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                      "-m", "mixgan", "train", "--quiet", "--device", "cpu", *args]  # gloo: CPU meant
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_torchrun_cli_trains_one_run_that_resumes_exactly(tmp_path):
    cli = tmp_path / "cli"
    cli.mkdir()
    sets = [a for k, v in RING.items() if k != "train.steps" for a in ("--set", f"{k}={v}")]
    first = torchrun(cli, *sets, "--steps", "10")  # no --out: rank 0 names the run and tells the others
    assert first.returncode == 0, first.stderr[-2000:]
    (run,) = (cli / "runs").iterdir()  # one run directory, nothing else
    assert sorted(p.name for p in cli.iterdir()) == ["runs"] and run.name.startswith("gmgan-ring-")
    assert first.stdout.count(f"run: runs/{run.name}") == 1  # rank 0 alone reports
    assert [json.loads(l)["step"] for l in (run / "stats.jsonl").read_text().splitlines()] == [5, 10]
    # continue the torchrun run to 20 steps, and run 20 steps uninterrupted, both in two ranks; a
    # third run without out, where each rank would pick its own name, must use rank 0's
    named = {**RING, "train.steps": 2, "train.checkpoint_every": 2, "default_out": str(tmp_path / "named")}
    ranks = run_ranks(tmp_path, [("resumed", {**RING, "out": str(run), "resume": True}),
                                 ("whole", {**RING, "out": str(tmp_path / "whole")}), ("named", named)])
    assert ranks[0] == ranks[1]
    assert ranks[0]["out"]["named"] == str(tmp_path / "named" / "named-by-rank0")
    assert [p.name for p in (tmp_path / "named").iterdir()] == ["named-by-rank0"]
    assert ranks[0]["resumed"] == ranks[0]["whole"]
    for module in ("G", "D"):
        assert checkpoint_digest(run, module) == ranks[0]["whole"][module]


class FakeCuda:
    """torch.cuda as a machine with ``count`` GPUs would answer it, recording set_device."""

    def __init__(self, monkeypatch, count: int):
        self.count, self.current, self.set = count, 0, []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "set_device", self.set.append)


@pytest.mark.parametrize("name", ["cuda", "auto"])
def test_bare_cuda_on_one_gpu_resolves_to_an_indexed_device(monkeypatch, name):
    from mixgan.training.dist import resolve_device

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    fake = FakeCuda(monkeypatch, 1)
    assert resolve_device(name) == torch.device("cuda:0")
    assert fake.set == [torch.device("cuda:0")] and fake.set[0].index == 0


def test_bare_cuda_under_torchrun_takes_the_local_rank(monkeypatch):
    from mixgan.training.dist import resolve_device

    monkeypatch.setenv("LOCAL_RANK", "1")
    fake = FakeCuda(monkeypatch, 2)
    assert resolve_device("cuda") == torch.device("cuda:1") and fake.set == [torch.device("cuda:1")]


def test_second_rank_on_a_one_gpu_machine_is_one_line(monkeypatch):
    from mixgan.errors import MixganError
    from mixgan.training.dist import resolve_device

    monkeypatch.setenv("LOCAL_RANK", "1")
    fake = FakeCuda(monkeypatch, 1)
    with pytest.raises(MixganError, match=r"cuda:1 requested but this machine has 1 CUDA device") as err:
        resolve_device("cuda")
    assert "\n" not in str(err.value) and fake.set == []


def test_channels_last_and_compile_options_train_and_keep_checkpoints_portable(tmp_path, monkeypatch):
    """The one-machine speed options: channels-last tensors and torch.compile (eager backend here,
    so the test checks the code path and Dynamo's tracing of our modules, not inductor's speed)."""
    import mixgan
    from mixgan.training import loop

    compiled, built = [], []
    original_compile, original_build = torch.nn.Module.compile, loop.build_model

    def eager_compile(self, *args, **kwargs):
        compiled.append(type(self).__name__)
        return original_compile(self, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: built.append(original_build(*a, **k)) or built[-1])
    settings = {**BASE, "model.name": "gmgan", "train.steps": 4, "train.checkpoint_every": 2}
    plain = mixgan.train(mixgan.build_config({**settings, "out": str(tmp_path / "plain")}))
    fast = mixgan.train(mixgan.build_config({**settings, "train.channels_last": True, "train.compile": True,
                                             "out": str(tmp_path / "fast")}))
    assert compiled == ["ConvGenerator", "ConvDiscriminator"]
    conv = built[-1].D.body[0].weight  # 8 x 1 x 4 x 4: channels-last strides the channel dimension by 1
    assert conv.stride()[1] == 1 and built[0].D.body[0].weight.stride()[1] == 16
    keys = [load_file(str(list_checkpoints(r.path / "checkpoints")[-1].with_suffix(".safetensors"))).keys()
            for r in (plain, fast)]
    assert keys[0] == keys[1]  # no _orig_mod. prefixes: a compiled run's checkpoint loads anywhere
    losses = [[json.loads(l)["loss_d"] for l in (r.path / "stats.jsonl").read_text().splitlines()] for r in (plain, fast)]
    assert len(losses[0]) == 2 and losses[1] == pytest.approx(losses[0], rel=1e-3)  # the same training, logged
    a, b = plain.sample(16, seed=3).x, fast.sample(16, seed=3).x
    assert torch.allclose(a, b, atol=1e-3)  # same seed, same numbers up to kernel rounding
