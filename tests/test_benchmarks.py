"""The benchmarks as tools: the shared harness, and a smoke run of each benchmark at tiny sizes whose
results-log entry must hold the figures the benchmark reports."""
from __future__ import annotations

import re

import pytest

from benchmarks import _harness as harness


@pytest.fixture
def results(tmp_path, monkeypatch):
    """Benchmarks log into a temporary results folder; returns a reader of one benchmark's log."""
    monkeypatch.setenv("MIXGAN_RESULTS_DIR", str(tmp_path / "results"))

    def read(name: str) -> str:
        return (tmp_path / "results" / f"{name}.md").read_text()

    return read


def test_log_result_appends_an_entry_with_command_commit_date_machine_and_load(results):
    harness.log_result("demo", "| a | b |\n|---|---|\n| 1 | 2 |", command="python -m benchmarks.demo --x 1")
    harness.log_result("demo", "second body", command="python -m benchmarks.demo --x 2")
    text = results("demo")
    assert text.count("\n## ") == 2
    first, second = text.split("\n## ")[1:]
    assert "`python -m benchmarks.demo --x 1`" in first and "| 1 | 2 |" in first
    assert "--x 2" in second and "second body" in second
    assert re.search(r"- commit: ([0-9a-f]{4,}(\+dirty)?|unknown)\n", first)
    assert re.search(r"- date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", first)
    assert re.search(r"- machine: .+, \d+ cores", first)
    assert re.search(r"- load average: [\d.]+ / [\d.]+ / [\d.]+", first)


def test_data_dir_prefers_the_flag_then_the_environment_then_the_usual_place(monkeypatch):
    monkeypatch.delenv("MIXGAN_DATA_DIR", raising=False)
    assert harness.data_dir("fashion-mnist") == "/usr/share/datasets/fashion-mnist"
    assert harness.data_dir("digits") == ""
    monkeypatch.setenv("MIXGAN_DATA_DIR", "/elsewhere")
    assert harness.data_dir("fashion-mnist") == "/elsewhere"
    assert harness.data_dir("fashion-mnist", "/given") == "/given"


def test_cache_key_changes_with_the_arguments_and_the_library_sources(monkeypatch):
    script = harness.__file__
    key = harness.cache_key(script, {"steps": 10})
    assert key == harness.cache_key(script, {"steps": 10})
    assert key != harness.cache_key(script, {"steps": 11})
    monkeypatch.setattr(harness, "code_version", lambda script=None: "another library")
    assert key != harness.cache_key(script, {"steps": 10})


def test_cached_computes_once_per_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXGAN_CACHE", str(tmp_path / "cache"))
    calls = []

    def compute(folder):
        calls.append(folder)
        return {"value": len(calls)}

    assert harness.cached("demo", harness.__file__, {"a": 1}, compute) == {"value": 1}
    assert harness.cached("demo", harness.__file__, {"a": 1}, compute) == {"value": 1}
    assert harness.cached("demo", harness.__file__, {"a": 2}, compute) == {"value": 2}
    assert calls[0].is_relative_to(tmp_path / "cache" / "benchmarks" / "demo")
