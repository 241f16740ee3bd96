"""Watching a run: plain progress lines, quality during training, the report, the explorer."""
import json

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
