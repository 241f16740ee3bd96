"""The benchmarks as tools: the shared harness, and a smoke run of each benchmark at tiny sizes whose
results-log entry must hold the figures the benchmark reports."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from benchmarks import _harness as harness


@pytest.fixture
def results(tmp_path, monkeypatch):
    """Benchmarks log into a temporary results folder and cache into a fresh folder; returns a
    reader of one benchmark's log."""
    monkeypatch.setenv("MIXGAN_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("MIXGAN_BENCH_CACHE", str(tmp_path / "bench-cache"))

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
    monkeypatch.setenv("MIXGAN_BENCH_CACHE", str(tmp_path / "cache"))
    calls = []

    def compute(folder):
        calls.append(folder)
        return {"value": len(calls)}

    assert harness.cached("demo", harness.__file__, {"a": 1}, compute) == {"value": 1}
    assert harness.cached("demo", harness.__file__, {"a": 1}, compute) == {"value": 1}
    assert harness.cached("demo", harness.__file__, {"a": 2}, compute) == {"value": 2}
    assert calls[0].is_relative_to(tmp_path / "cache" / "demo")


def test_toy_smoke_logs_every_seeds_modes_and_kl(results):
    from benchmarks import toy

    rows = toy.main(["--smoke"])
    entry = results("toy").split("\n## ")[-1]
    assert "python -m benchmarks.toy --smoke" in entry
    for r in rows:
        assert f"| ring | gmgan | {r['seed']} | 30 | {r['modes']}/8 | {100 * r['high_quality']:.1f}% | {r['kl']:.3f} |" in entry


@pytest.mark.slow  # four processes: two trainings, two evaluations
def test_quality_smoke_logs_each_entrys_fid_and_its_ratio_to_the_script(results):
    from benchmarks import quality

    rows = quality.main(["--smoke", "--eval-jobs", "2"])
    entry = results("quality").split("\n## ")[-1]
    assert [r["label"] for r in rows] == ["dcgan", "gan"]
    for r in rows:
        assert r["steps"] == 20
        assert f"| {r['label']} | 20 | {r['fid']:.3g} | {r['fid_ratio']:.3g} | {r['is']:.3g} |" in entry
    assert rows[0]["fid_ratio"] == 1.0


@pytest.mark.slow  # five short trainings of three models
def test_launches_smoke_logs_each_entrys_operations_per_step(results):
    from benchmarks import launches

    rows = launches.main(["--smoke"])
    entry = results("launches").split("\n## ")[-1]
    assert [label for label, _ in rows][:3] == ["script DCGAN", "gan", "gmgan"]
    script = rows[0][1]
    for label, total in rows:
        assert total > 0
        assert f"| {label} | {total:.0f} | {total / script:.2f} |" in entry


def test_throughput_smoke_logs_both_loops_images_per_second(results):
    from benchmarks import throughput

    rows = throughput.main(["--smoke"])
    entry = results("throughput").split("\n## ")[-1]
    (r,) = rows
    assert r["batch"] == 16 and r["library_img_s_wall"] > 0 and r["hand_img_s_wall"] > 0
    assert (f"| 16 | {r['library_img_s_wall']:.0f} | {r['hand_img_s_wall']:.0f} | {r['library_img_s_cpu']:.0f} | "
            f"{r['hand_img_s_cpu']:.0f} | {100 * r['overhead_cpu_median']:+.1f}% /") in entry


def test_eval_speed_smoke_logs_stage_times_and_the_noisy_images_worse_fid(results):
    from benchmarks import eval_speed

    r = eval_speed.main(["--smoke", "--threads", "1"])
    entry = results("eval_speed").split("\n## ")[-1]
    assert f"| {r['load_cached_real_s']:.4g} | {r['fake_features_s']:.4g} | {r['fid_s']:.4g} | {r['prdc_s']:.4g} | {r['total_s']:.4g} |" in entry
    assert f"test accuracy {r['classifier_accuracy']:.4f}" in entry
    clean, noisy = r["sanity"].values()
    assert noisy["fid"] > clean["fid"]
    assert f"| test split | {clean['fid']:.4g} | {clean['is']:.4g} |" in entry


def test_explore_speed_smoke_logs_each_moves_grid_time_and_the_settle_time(results):
    from benchmarks import explore_speed

    r = explore_speed.main(["--smoke", "--threads", "1"])
    entry = results("explore_speed").split("\n## ")[-1]
    assert "python -m benchmarks.explore_speed --smoke --threads 1" in entry
    assert f"| grid response, one move at a time: median | {r['grid_ms_median']} ms |" in entry
    assert f"last move to its grid | {r['settle_ms']} ms |" in entry and r["settle_ms"] > 0
    assert len(re.findall(r"^\| \d+ \| (scale|seed|Gaussian) \| [\d.]+ \|$", entry, re.M)) == 5


def test_knn_smoke_logs_time_and_memory_of_the_neighbour_lists(results):
    from benchmarks import knn

    (r,) = knn.main(["--smoke", "--threads", "1"])
    entry = results("knn").split("\n## ")[-1]
    assert (r["M"], r["k"], r["backend"]) == (300, 5, "torch")
    assert f"| 300 | torch | {r['knn_s']} | {r['knn_cpu_s']} | {r['peak_extra_mb']} | {r['result_mb']} |" in entry


def test_first_minute_smoke_logs_when_a_start_and_a_resume_first_show_something(results):
    from benchmarks import first_minute

    r = first_minute.main(["--smoke"])
    entry = results("first_minute").split("\n## ")[-1]
    assert {"real.png", "first grid", "first log line"} <= set(r["first"])
    assert "real.png" not in r["resume"] and "first log line" in r["resume"]  # real.png is kept
    first, again = ({what.split(" of ")[0] for what, _ in r[k]["tasks"]} for k in ("first", "resume"))
    assert not (first & again) and "| resume |" in entry  # nothing the first start prepared is prepared again


def test_cluster_sweep_smoke_logs_accuracy_beside_kmeans(results):
    from benchmarks import cluster_sweep

    (r,) = cluster_sweep.main(["--smoke"])
    entry = results("cluster_sweep").split("\n## ")[-1]
    assert (r["K"], r["sigma"], r["steps"]) == (10, 1.0, 20)
    assert 0 <= r["accuracy"] <= 1
    assert (f"| defaults | 10 | 1.0 | 20 | 0 | {r['accuracy']:.3f} | {r['nmi']:.3f} | {r['purity']:.3f} | "
            f"{r['classes_covered']} of 10 | – | {r['kmeans']:.3f} | {r['kmeans_nmi']:.3f} |") in entry


@pytest.mark.slow  # three trainings and a trade-off sweep
def test_gmgan_repro_smoke_logs_each_variants_fid_and_the_tradeoff_curve(results):
    from benchmarks import gmgan_repro

    out = gmgan_repro.main(["--smoke"])
    entry = results("gmgan_repro").split("\n## ")[-1]
    assert [r["variant"] for r in out["rows"]] == ["gan", "gmgan-static-K5", "gmgan-dynamic-K5"]
    for r in out["rows"]:
        assert f"| digits | {r['variant']} | 1 | 20 | {r['fid']:.3f} | {r['is']:.3f} |" in entry
    curve = out["tradeoff"]["digits"]
    assert f"| 0.5 | {curve['quality'][0]:.3f} | {curve['diversity'][0]:.3f} |" in entry


@pytest.mark.slow  # two trainings, the classifier embedding and an evaluation
def test_icgan_smoke_logs_fid_and_instance_fidelity(results):
    from benchmarks import icgan

    rows = icgan.main(["--smoke"])
    entry = results("icgan").split("\n## ")[-1]
    assert [r["model"] for r in rows] == ["icgan", "gan"]
    ic, gan = rows
    assert (f"| icgan | {ic['train_s']} | {ic['fid']:.2f} | {ic['precision']:.3f} | {ic['recall']:.3f} | "
            f"{ic['density']:.3f} | {ic['coverage']:.3f} | {ic['instance_fidelity']:.3f} | "
            f"{ic['instance_fidelity_unseen']:.3f} |") in entry
    assert f"| gan | {gan['train_s']} | {gan['fid']:.2f} |" in entry


def test_icgan_toy_smoke_logs_the_share_near_the_conditioning_mode(results):
    from benchmarks import icgan

    figures = icgan.main(["--toy", "--smoke"])
    entry = results("icgan").split("\n## ")[-1]
    assert "python -m benchmarks.icgan --toy --smoke" in entry
    assert f"overall {figures['overall']:.3f}, worst mode {figures['worst_mode']:.2f}" in entry


@pytest.mark.slow  # two trainings, class-by-class sampling and CAS
def test_conditional_smoke_logs_each_models_class_accuracy_and_fid(results):
    from benchmarks import conditional

    rows = conditional.main(["--smoke"])
    entry = results("conditional").split("\n## ")[-1]
    assert [r["config"] for r in rows] == ["cgan", "acgan"]
    for r in rows:
        assert (f"| {r['config']} | {r['is']:.2f} | {r['fid']:.2f} | {r['intra_fid']:.2f} | "
                f"{r['conditional_accuracy']:.3f} | {r['cas']:.3f} | 20 |") in entry


def test_conditional_linear_smoke_logs_generated_against_true_means(results):
    from benchmarks import conditional

    rows = conditional.main(["--dataset", "linear", "--smoke"])
    entry = results("conditional").split("\n## ")[-1]
    assert len(rows) == len(conditional.LINEAR_CONDITIONS)
    for r in rows:
        assert f"| ({r['mean'][0]:.2f}, {r['mean'][1]:.2f}) |" in entry
        assert f"| ({r['true_mean'][0]:.2f}, {r['true_mean'][1]:.2f}) |" in entry


@pytest.mark.slow  # runs benchmarks.throughput and benchmarks.quality as its steps
def test_gpu_check_smoke_runs_each_step_and_collects_their_results(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "gpu-out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "MIXGAN_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--smoke"], cwd=harness.ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    log = (out / "gpu.log").read_text()
    assert proc.returncode == 0, log
    assert "throughput: exit 0" in log and "quality: exit 0" in log
    assert re.search(r"\| 16 \| \d+ \| \d+ \| \d+ \| \d+ \| [+-]\d", (out / "results" / "throughput.md").read_text())
    assert re.search(r"\| dcgan \| 20 \| [\d.]+ \| 1 \|", (out / "results" / "quality.md").read_text())


def test_eval_cost_smoke_logs_the_ratio_of_runs_with_and_without_evaluation(results):
    from benchmarks import eval_cost

    (row,) = eval_cost.main(["--smoke"])
    entry = results("eval_cost")
    assert "python -m benchmarks.eval_cost --smoke" in entry
    assert row["evaluations"] == 2 and row["eval_s"] > 0
    assert f"| {row['ratio']:.3f} |" in entry and f"{row['share']:.1%}" in entry


def current_entries(log: str) -> str:
    """The entries of a results log that no newer entry with the same title supersedes (an entry
    titled only by its date is a measurement of its own)."""
    newest = {}
    for i, entry in enumerate(re.split(r"\n(?=## )", log)[1:]):
        title = entry.split("\n", 1)[0]
        newest[i if re.fullmatch(r"## [\d-]+ [\d:]+ UTC", title) else title] = entry
    return "\n".join(newest.values())


def test_current_entries_drop_a_superseded_measurement():
    log = ("# x\n\n## speed\n\n| 1.5 |\n\n## memory\n\n| 7.25 |\n\n## speed\n\n| 2.5 |\n"
           "\n## 2026-12-06 09:27 UTC\n\n| 3.5 |\n\n## 2026-12-06 09:27 UTC\n\n| 4.5 |\n")
    text = current_entries(log)
    assert "2.5" in text and "7.25" in text and "3.5" in text and "4.5" in text and "1.5" not in text


def test_readme_results_at_a_glance_quote_their_results_logs():
    """Every figure in the README's "Results at a glance" table appears in a current entry of the
    results log its row names (an older entry of the same measurement does not count)."""
    readme = (harness.ROOT / "README.md").read_text()
    section = readme.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    assert len(rows) >= 10
    for row in rows:
        what, measured, log = [cell.strip() for cell in row.strip("|").split("|")]
        path = harness.ROOT / log.strip("`")
        assert log.startswith("`benchmarks/results/") and path.is_file(), row
        text = current_entries(path.read_text())
        for figure in re.findall(r"\d[\d,]*(?:\.\d+)?", measured):
            assert figure in text, f"{figure} ({what}) is not in a current entry of {log}"


def test_the_guide_quotes_current_entries_of_the_logs_it_names():
    """A paragraph of docs/*.md that names a results log quotes its measured figures (numbers with a
    decimal point, outside code) from current entries of the logs it names."""
    for doc in sorted((harness.ROOT / "docs").glob("*.md")):
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for paragraph in re.split(r"\n\s*\n", text):
            logs = set(re.findall(r"benchmarks/results/(\w+)\.md", paragraph))
            if not logs:
                continue
            current = "\n".join(current_entries((harness.RESULTS / f"{name}.md").read_text())
                                for name in logs if (harness.RESULTS / f"{name}.md").is_file())
            prose = re.sub(r"\d+\.\d+\.\d+\.\d+", "", re.sub(r"`[^`]*`", "", paragraph))  # no code, no addresses
            for figure in re.findall(r"(?<![\w.])\d[\d,]*\.\d+", prose):
                assert figure in current, f"{doc.name}: {figure} is not in a current entry of {sorted(logs)}"


def test_every_benchmark_module_runs_as_a_command(tmp_path):
    """``python -m benchmarks.NAME --help`` exits 0 for every module, and each offers ``--smoke``;
    ``--smoke`` of the conditional benchmark exits 0 as a command (its ``main`` returns rows)."""
    env = {**os.environ, "MIXGAN_RESULTS_DIR": str(tmp_path / "results"), "PYTHONPATH": str(harness.ROOT)}
    for path in sorted((harness.ROOT / "benchmarks").glob("[!_]*.py")):
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{path.stem}", "--help"], cwd=harness.ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{path.stem}: {done.stderr[-500:]}"
        assert "--smoke" in done.stdout, f"benchmarks.{path.stem} has no --smoke"
    done = subprocess.run([sys.executable, "-m", "benchmarks.conditional", "--smoke"], cwd=harness.ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-1000:]


def test_every_benchmark_is_a_module_with_a_smoke_test_and_no_private_paths():
    """Benchmarks import no other benchmark but the harness, patch no sys.path, name no dataset
    folder of their own, and each is run by a test."""
    tests = "\n".join(p.read_text() for p in (harness.ROOT / "tests").glob("test_*.py"))
    scripts = [p for p in (harness.ROOT / "benchmarks").iterdir()
               if p.suffix in (".py", ".sh") and not p.name.startswith("_")]
    assert len(scripts) >= 11
    for path in scripts:
        source = path.read_text()
        assert "sys.path" not in source, path.name
        assert "/usr/share/datasets" not in source, path.name
        modules = re.findall(r"from (?:benchmarks)?\.(\w+) import|from (?:benchmarks|\.) import (\w+)", source)
        modules += re.findall(r"import benchmarks\.(\w+)", source)
        for names in modules:
            assert {n for n in names if n} <= {"_harness"}, f"{path.name} imports {names}"
        name = path.stem
        assert re.search(rf"benchmarks(\.| import ){name}\b|benchmarks/{path.name}", tests), f"no test runs {path.name}"


def test_the_demo_trains_digits_gmgan_with_its_recipe_and_nothing_else():
    """`make demo`'s training command sets no value of its own: every setting is the default
    recipe's (or a dataclass default), so the demo shows what `gmgan` on digits trains."""
    from benchmarks import demo
    from mixgan.cli import build_parser
    from mixgan.cli.train import resolve

    commands = demo.demo_commands()
    assert [c[0] for c in commands] == ["train", "evaluate", "cluster", "tradeoff", "report"]
    cfg, _ = resolve(build_parser().parse_args(commands[0]))
    assert cfg.recipe == "digits-gmgan" and cfg.encoder.enabled
    given = {key: source for key, source in cfg.sources.items()
             if source not in ("default", "recipe digits", "recipe digits-gmgan") and not source.startswith("chosen for")}
    assert set(given) <= {"model.name", "data.dataset", "out"}, given


@pytest.mark.slow  # the demo's five commands, each in its own process
def test_demo_smoke_logs_each_commands_time_and_the_clustering_beside_kmeans(results):
    from benchmarks import demo

    ((seed, stages, scores),) = demo.main(["--smoke"])
    entry = results("demo").split("\n## ")[-1]
    assert seed == 0 and [s["stage"] for s in stages] == ["train", "evaluate", "cluster", "tradeoff", "report"]
    assert all(s["cpu_s"] > 0 and s["wall_s"] > 0 for s in stages)
    assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["kmeans"] <= 1
    assert f"| {scores['accuracy']:.3f} | {scores['nmi']:.3f} | {scores['kmeans']:.3f} | {scores['fid']:.2f} |" in entry


def test_streamed_quality_smoke_logs_both_paths_scores_and_the_speed_ratio(results, tmp_path):
    """Both data paths of icgan and the encoder gmgan are trained and scored; --speed logs both rates and their ratio."""
    from benchmarks import streamed_quality

    text = streamed_quality.main(["--smoke", "--out", str(tmp_path / "out")])
    entry = results("streamed_quality")
    assert "python -m benchmarks.streamed_quality --smoke" in entry and text in entry
    rows = [line for line in text.splitlines() if re.match(r"\| (icgan|gmgan) \| (memory|shards) \| 0 \|", line)]
    assert len(rows) == 4
    fids = [float(r.split("|")[5]) for r in rows]
    assert all(f > 0 for f in fids)
    assert re.search(r"\| icgan \| shards \| 0 \| [\d.]+ \| [\d.]+ \| (0|1)\.\d+ \|", text)  # instance fidelity
    assert re.search(r"\| gmgan \| shards \| 0 \| [\d.]+ \| [\d.]+ \| – \| (0|1)\.\d+ \|", text)  # clustering accuracy
    speed = streamed_quality.main(["--smoke", "--speed", "--out", str(tmp_path / "out")])
    ratio = float(re.search(r"shards / memory: ([\d.]+)", speed).group(1))
    assert ratio > 0 and "shards / memory" in results("streamed_quality")


def test_streamed_quality_against_the_same_code_finds_no_tensor_that_differs(results, tmp_path):
    """--against compares every checkpoint tensor of two runs: with this very checkout, none differs."""
    from benchmarks import streamed_quality

    text = streamed_quality.main(["--against", str(harness.ROOT), "--dataset", "digits", "--models", "icgan",
                                  "--steps", "3", "--out", str(tmp_path / "against")])
    (row,) = [line for line in text.splitlines() if line.startswith("| icgan |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[1]) > 50 and cells[2] == "0"


def test_eval_memory_smoke_logs_each_commands_peak_memory_above_the_loaded_run(results):
    from benchmarks import eval_memory

    rows = eval_memory.main(["--smoke"])
    entry = results("eval_memory").split("\n## ")[-1]
    assert "python -m benchmarks.eval_memory --smoke" in entry
    assert [r["command"] for r in rows] == ["evaluate", "tradeoff"]
    for r in rows:
        assert r["peak_mb"] >= r["base_mb"] > 0
        assert f"| {r['command']} | {r['args']} | {r['base_mb']:.0f} | {r['peak_mb']:.0f} | {r['above_mb']:.0f} |" in entry
