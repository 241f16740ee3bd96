"""Recipes: one base per dataset family, what each model changes on it, named variants; resolved
in one visible order."""
import json
import re
from pathlib import Path

import pytest

from mixgan.config import (MODEL_TABLE, VARIANT_TABLE, Recipe, base_names, build_config, dump_toml, flat_dict,
                           load_config, recipe_names)
from mixgan.errors import MixganError
from mixgan.models import MODELS

DATASETS = {"toy": "grid", "ring": "ring", "image": "fashion-mnist", "digits": "digits", "npz": "npz:any.npz"}
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "recipes_resolved.json").read_text())


def _case_values(case: str) -> dict:
    """``image gmgan encoder=false`` or ``recipe image-dcgan-ns digits cgan`` as build_config values."""
    parts = case.split()
    if parts[0] == "recipe":
        values = {"recipe": parts[1], "data.dataset": parts[2], **({"model.name": parts[3]} if parts[3:] else {})}
    else:
        values = {"data.dataset": DATASETS[parts[0]], "model.name": parts[1]}
        if parts[2:]:
            values["encoder.enabled"] = parts[2] == "encoder=true"
    return {**values, "train.device": "cpu"}


def test_every_family_model_and_named_recipe_resolves_to_the_values_the_whole_files_gave():
    """The fixture holds what every (family, model, encoder switch) and every named recipe resolved
    to before recipes became bases and deltas; every value, and its type, must be the same."""
    assert len(FIXTURE["cases"]) == 165
    for case, diff in FIXTURE["cases"].items():
        want = {**FIXTURE["defaults"], **diff}
        got = flat_dict(build_config(_case_values(case)))
        changed = {k: (want[k], got[k]) for k in want if (want[k], type(want[k])) != (got[k], type(got[k]))}
        assert not changed and set(got) == set(want), (case, changed)


@pytest.mark.parametrize("family", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_dataset_family_and_model_resolves_to_its_base_and_the_models_entry(family, model):
    cfg = build_config({"data.dataset": DATASETS[family], "model.name": model})
    assert cfg.recipe == f"{family}-{model}"
    recipe = Recipe.read(cfg.recipe)
    assert recipe.layers[-1].name == cfg.recipe and recipe.layers[-2].name == family
    sources = recipe.sources()
    for key, value in recipe.values.items():  # every value of every layer reaches the config, named by its layer
        if key != "model.name":
            assert flat_dict(cfg)[key] == value and cfg.sources[key] == sources[key], key
    assert {s for k, s in cfg.sources.items() if s.startswith("recipe ")} <= {f"recipe {layer.name}" for layer in recipe.layers}


def test_values_live_once_a_delta_restates_nothing_of_its_base():
    """The toy, ring and npz families train every model on the base; a model's entry or a variant
    holds only what differs from the base it names."""
    for name in recipe_names():
        recipe = Recipe.read(name)
        below = {}
        for layer in recipe.layers[:-1]:
            below.update(layer.values)
        same = {k: v for k, v in recipe.layers[-1].values.items() if k in below and below[k] == v}
        assert not same, (name, same)
    assert [n for n in recipe_names() if n.split("-")[0] in ("toy", "ring", "npz") and n not in base_names()] == []
    assert Recipe.read("ring").chain == "toy + ring" and Recipe.read("ring-gan").values["train.lr_g"] == 0.001
    assert build_config({"data.dataset": "ring"}).sources["train.lr_g"] == "recipe toy"


def test_sources_name_the_base_and_the_delta(cli, tmp_path):
    cfg = build_config({"data.dataset": "fashion-mnist"})
    assert (cfg.sources["train.lr_g"], cfg.sources["prior.sigma"]) == ("recipe image", "recipe image-gmgan")
    code, out, _ = cli("train", "--dataset", "fashion-mnist", "--out", tmp_path / "r", "--dry-run")
    assert code == 0 and out.startswith("recipe: image-gmgan = image + image-gmgan (")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert rows["prior.sigma"] == ["0.15", "recipe", "image-gmgan"] and rows["train.lr_g"] == ["0.0005", "recipe", "image"]


def test_a_users_recipe_may_name_a_base(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('base = "image-gmgan"\n[train]\nlr_g = 0.003\n')
    cfg = build_config({"recipe": str(mine), "data.dataset": "fashion-mnist"})
    assert (cfg.train.lr_g, cfg.train.lr_d, cfg.prior.sigma, cfg.model.name) == (0.003, 0.001, 0.15, "gmgan")
    assert cfg.sources["train.lr_g"] == f"recipe {mine}" and cfg.sources["prior.sigma"] == "recipe image-gmgan"
    assert Recipe.read(str(mine)).chain == f"image + image-gmgan + {mine}"
    mine.write_text(f'base = "{mine}"\n')
    with pytest.raises(MixganError, match="loops"):
        build_config({"recipe": str(mine)})


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_names_batch_size_and_learning_rates(name):
    """What batch size and learning rate a command uses can be read from its recipe file alone."""
    values = Recipe.read(name).values
    assert {"train.batch_size", "train.lr_g", "train.lr_d"} <= set(values)


def test_order_is_defaults_recipe_file_then_flags(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[train]\nlr_g = 0.003\nbatch_size = 16\n')
    cfg = build_config({"data.dataset": "fashion-mnist", "train.batch_size": 8}, config_file=f,
                       overrides=["train.steps=7"])
    assert (cfg.train.lr_g, cfg.train.batch_size, cfg.train.steps) == (0.003, 8, 7)
    assert cfg.train.lr_d == Recipe.read("image").values["train.lr_d"]
    assert cfg.sources["train.lr_g"] == f"file {f}"
    assert cfg.sources["train.batch_size"] == "argument"
    assert cfg.sources["train.steps"] == "--set"
    assert cfg.sources["train.lr_d"] == "recipe image"
    assert cfg.sources["train.r1"] == "default"


def test_a_cuda_table_applies_only_on_cuda_and_is_named(tmp_path):
    recipe = tmp_path / "gpu.toml"
    recipe.write_text('[train]\nbatch_size = 32\nlr_g = 0.001\nlr_d = 0.001\n[cuda.train]\nbatch_size = 256\n')
    cpu = build_config({"recipe": str(recipe), "train.device": "cpu"})
    gpu = build_config({"recipe": str(recipe), "train.device": "cuda"})
    assert (cpu.train.batch_size, gpu.train.batch_size) == (32, 256)
    assert gpu.sources["train.batch_size"] == f"recipe {recipe} [cuda]"
    from mixgan.cli.common import recipe_line
    assert "device cuda: train.batch_size=256" in recipe_line(gpu)
    assert "no device-specific values" in recipe_line(cpu)
    # the user still wins over the device
    assert build_config({"recipe": str(recipe), "train.device": "cuda", "train.batch_size": 4}).train.batch_size == 4


def test_shipped_recipes_choose_nothing_by_device():
    """No GPU value ships unmeasured: the same command resolves the same on a CPU and a GPU."""
    for name in recipe_names():
        assert Recipe.read(name).cuda == {}, name


def test_turning_the_encoder_on_brings_its_companions_and_off_gives_the_papers_model():
    fashion = build_config({"data.dataset": "fashion-mnist"}, overrides=["model.encoder=true"])
    assert fashion.recipe == "image-gmgan" and fashion.encoder.enabled
    assert (fashion.prior.means, fashion.prior.components, fashion.prior.sigma) == ("onehot", 10, 0.15)
    paper = build_config({"data.dataset": "fashion-mnist"}, overrides=["encoder.enabled=false"])
    assert paper.recipe == "image-gmgan-paper" and not paper.encoder.enabled
    assert (paper.prior.means, paper.prior.components, paper.prior.sigma) == ("uniform", 30, 1.0)
    digits = build_config({"data.dataset": "digits"})
    assert digits.recipe == "digits-gmgan" and digits.encoder.enabled
    assert build_config({"data.dataset": "digits", "encoder": False}).recipe == "digits-gmgan-paper"
    mine = build_config({"data.dataset": "fashion-mnist"}, overrides=["sigma=0.3", "components=12"])
    assert (mine.encoder.enabled, mine.prior.means, mine.prior.components, mine.prior.sigma) == (True, "onehot", 12, 0.3)


def test_an_unknown_recipe_is_one_line():
    with pytest.raises(MixganError, match="unknown recipe 'nope'"):
        build_config({"recipe": "nope"})


def test_dry_run_shows_each_values_source_and_creates_nothing(cli, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = cli("train", "--dataset", "fashion-mnist", "--model", "gan", "--set", "train.lr_g=0.002",
                          "--batch-size", "16", "--out", out, "--dry-run")
    assert code == 0 and not out.exists()
    rows = {line.split()[0]: line for line in stdout.splitlines()[2:]}
    assert stdout.splitlines()[0].startswith("recipe: image-gan = image (")
    assert rows["train.lr_g"].split()[1:] == ["0.002", "--set"]
    assert rows["train.batch_size"].split()[1:] == ["16", "command", "line"]
    assert rows["train.lr_d"].split()[1:] == ["0.001", "recipe", "image"]
    assert rows["train.seed"].split()[1:] == ["0", "default"]


def test_a_run_keeps_its_sources_and_info_shows_them(cli, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = cli("train", "--dataset", "ring", "--steps", "4", "--set", "model.width=8", "--out", out, "--quiet")
    assert code == 0 and stdout.startswith("recipe: ring-gmgan = toy + ring (")
    cfg = load_config(out / "config.toml")
    assert cfg.sources["model.width"] == "--set" and cfg.sources["train.lr_g"] == "recipe toy"
    code, stdout, _ = cli("info", out)
    assert any(line.split()[:3] == ["model.width", "8", "--set"] for line in stdout.splitlines())


def test_a_config_written_before_recipes_migrates(tmp_path):
    """Version 1 files kept the encoder's settings in [model] and lacked later settings."""
    cfg = build_config({"data.dataset": "fashion-mnist", "out": "x"})
    v1 = dump_toml(cfg).replace("version = 2\n", "").replace('recipe = "image-gmgan"', "")
    v1 = v1.replace("\n[encoder]\n", "\n").replace("enabled = ", "encoder = ")
    for name in ("ce", "l2", "real", "neighbors", "space", "init", "entropy", "cond_d", "balance", "heads", "selflabel"):
        v1 = v1.replace(f"\n{name} = ", f"\nencoder_{name} = ")
    v1 = v1.replace('condition = "auto"', "").replace("mismatch = 0.0", "")
    v1 = v1.replace("selfsup_steps = 600", "").replace("selfsup_batch = 256", "").replace('real_cluster = "argmax"', "")
    (tmp_path / "config.toml").write_text(v1)
    old = load_config(tmp_path / "config.toml")
    assert old.encoder == cfg.encoder and old.prior == cfg.prior and old.train == cfg.train
    assert (old.model.condition, old.model.mismatch) == ("concat", 0.0)  # what runs before these settings did
    (tmp_path / "config.toml").write_text(dump_toml(cfg).replace("version = 2", "version = 9"))
    with pytest.raises(MixganError, match="version 9 is newer"):
        load_config(tmp_path / "config.toml")


def test_resolved_config_round_trips_with_its_sources(tmp_path):
    cfg = build_config({"data.dataset": "grid", "prior.dynamic": True, "out": "x"}, overrides=["sigma=0.5"])
    (tmp_path / "c.toml").write_text(dump_toml(cfg))
    back = load_config(tmp_path / "c.toml")
    assert back == cfg and back.sources == cfg.sources


def test_recipes_command_lists_each_recipe_resolved_and_prints_one_as_a_complete_file(cli):
    code, out, _ = cli("recipes")
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0 and set(rows) == set(recipe_names()) | {f"{b}-{m}" for b in base_names() for m in MODELS}
    assert re.match(r"image-gmgan-paper +image \+ image-gmgan-paper +The paper's GM-GAN", rows["image-gmgan-paper"])
    assert rows["ring-gan"].split()[1:4] == ["toy", "+", "ring"]
    code, out, _ = cli("recipes", "ring-gmgan")
    assert code == 0 and "r1 = 0.1  # ring" in out and "lr_g = 0.001  # toy" in out and 'name = "gmgan"' in out
    code, _, err = cli("recipes", "nope")
    assert code == 2 and err.startswith("mixgan: error: unknown recipe 'nope'")


def test_a_printed_recipe_is_a_complete_recipe_that_resolves_the_same(cli, tmp_path):
    code, out, _ = cli("recipes", "image-gmgan")
    (tmp_path / "copy.toml").write_text(out)
    mine = build_config({"recipe": str(tmp_path / "copy.toml"), "data.dataset": "fashion-mnist"})
    shipped = build_config({"data.dataset": "fashion-mnist"})
    assert flat_dict(mine) == {**flat_dict(shipped), "recipe": str(tmp_path / "copy.toml")}


@pytest.mark.parametrize("family", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_dry_run_names_a_source_for_every_setting_of_every_model_and_family(cli, family, model, tmp_path):
    dataset = DATASETS[family]
    if family == "npz":  # the dry run reads the file's header, as a run reads the file
        import numpy as np

        np.savez(tmp_path / "any.npz", x=np.zeros((10, 2), np.float32), y=np.arange(10) % 2)
        dataset = f"npz:{tmp_path / 'any.npz'}"
    code, out, err = cli("train", "--dataset", dataset, "--model", model, "--out", tmp_path / "r", "--dry-run")
    assert code == 0, err
    header, *rows = out.splitlines()[1:]
    at = header.index("source")
    sources = {row.split()[0]: row[at:] for row in rows}
    assert set(sources) == set(flat_dict(build_config({"data.dataset": dataset, "model.name": model})))
    for key, source in sources.items():
        assert re.fullmatch(r"default|command line|recipe [\w-]+|chosen for \S+ and \S+|auto: .+", source), (key, source)
    assert sources["model.name"] == "command line" and sources["train.batch_size"].startswith("recipe ")
    assert not (tmp_path / "r").exists()
