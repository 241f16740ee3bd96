import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MIXGAN_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "mixgan"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

FASHION = "/usr/share/datasets/fashion-mnist"
# The device of the device-sensitive tests: MIXGAN_TEST_DEVICE=cuda make test reruns them on a GPU.
# Tests that mean the CPU (exact resume, gloo) pin "cpu" instead.
TEST_DEVICE = os.environ.get("MIXGAN_TEST_DEVICE", "cpu")


def pytest_collection_modifyitems(config, items):
    if not os.path.isdir(FASHION):
        skip = pytest.mark.skip(reason=f"{FASHION} missing: apt-get install dataset-fashion-mnist")
        for item in items:
            if "fashion" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def device() -> str:
    """The device under test (MIXGAN_TEST_DEVICE, default cpu)."""
    return TEST_DEVICE


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit status, stdout, stderr)."""
    from mixgan.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def idx_bytes(array, code: int = 0x08) -> bytes:
    """An IDX file: magic (0, the element type code, ndim), the big-endian sizes, then the data."""
    import struct

    return struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def small_config(tmp_path, device: str = "cpu", **values):
    """A small ring GM-GAN config; ``device`` is train.device (pass the ``device`` fixture where
    the test is about any device, keep "cpu" where it means the CPU). Without the encoder unless a
    test turns it on: on images that is the ``*-paper`` recipe, so a digits test trains no
    contrastive encoder it does not ask for."""
    import mixgan

    base = {"train.device": device, "model.name": "gmgan", "encoder.enabled": False, "data.dataset": "ring",
            "prior.components": 8, "train.steps": 20,
            "train.batch_size": 32, "train.log_every": 5, "train.sample_every": 10, "train.checkpoint_every": 10,
            "model.width": 16, "out": str(tmp_path / "run")}
    base.update(values)
    return mixgan.build_config(base)
