import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MIXGAN_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "mixgan"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

FASHION = "/usr/share/datasets/fashion-mnist"


def pytest_collection_modifyitems(config, items):
    if not os.path.isdir(FASHION):
        skip = pytest.mark.skip(reason=f"{FASHION} missing: apt-get install dataset-fashion-mnist")
        for item in items:
            if "fashion" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit status, stdout, stderr)."""
    from mixgan.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def small_config(tmp_path, **values):
    import mixgan

    base = {"model.name": "gmgan", "data.dataset": "ring", "prior.components": 8, "train.steps": 20,
            "train.batch_size": 32, "train.log_every": 5, "train.sample_every": 10, "train.checkpoint_every": 10,
            "model.width": 16, "out": str(tmp_path / "run")}
    base.update(values)
    return mixgan.build_config(base)
