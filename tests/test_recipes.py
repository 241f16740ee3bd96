"""Recipes are files: one per dataset family and model, resolved in one visible order."""
import re


import pytest

from mixgan.config import (RECIPES_DIR, Recipe, build_config, dump_toml, flat_dict, load_config, recipe_names)
from mixgan.errors import MixganError
from mixgan.models import MODELS

DATASETS = {"toy": "grid", "ring": "ring", "image": "fashion-mnist", "digits": "digits", "npz": "npz:any.npz"}


@pytest.mark.parametrize("family", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_dataset_family_and_model_resolves_to_a_shipped_recipe(family, model):
    cfg = build_config({"data.dataset": DATASETS[family], "model.name": model})
    assert (RECIPES_DIR / f"{cfg.recipe}.toml").is_file()
    assert cfg.recipe in (f"{family}-{model}", f"{DATASETS[family]}-{model}")
    for key, value in Recipe.read(cfg.recipe).values.items():  # every other value of the file reaches the config
        if key == "model.name":
            continue
        assert flat_dict(cfg)[key] == value and cfg.sources[key] == f"recipe {cfg.recipe}", key


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
    assert cfg.train.lr_d == Recipe.read("image-gmgan").values["train.lr_d"]
    assert cfg.sources["train.lr_g"] == f"file {f}"
    assert cfg.sources["train.batch_size"] == "argument"
    assert cfg.sources["train.steps"] == "--set"
    assert cfg.sources["train.lr_d"] == "recipe image-gmgan"
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
    assert stdout.splitlines()[0].startswith("recipe: image-gan (")
    assert rows["train.lr_g"].split()[1:] == ["0.002", "--set"]
    assert rows["train.batch_size"].split()[1:] == ["16", "command", "line"]
    assert rows["train.lr_d"].split()[1:] == ["0.001", "recipe", "image-gan"]
    assert rows["train.seed"].split()[1:] == ["0", "default"]


def test_a_run_keeps_its_sources_and_info_shows_them(cli, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = cli("train", "--dataset", "ring", "--steps", "4", "--set", "model.width=8", "--out", out, "--quiet")
    assert code == 0 and stdout.startswith("recipe: ring-gmgan")
    cfg = load_config(out / "config.toml")
    assert cfg.sources["model.width"] == "--set" and cfg.sources["train.lr_g"] == "recipe ring-gmgan"
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
    v1 = v1.replace("selfsup_steps = 600", "").replace("selfsup_batch = 256", "")
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


def test_recipes_command_lists_each_recipe_with_what_it_trains_and_prints_one(cli):
    code, out, _ = cli("recipes")
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert code == 0 and set(rows) == set(recipe_names())
    assert rows["image-gmgan-paper"].startswith("The paper's GM-GAN")
    code, out, _ = cli("recipes", "ring-gmgan")
    assert code == 0 and "r1 = 0.1" in out
    code, _, err = cli("recipes", "nope")
    assert code == 2 and err.startswith("mixgan: error: unknown recipe 'nope'")


@pytest.mark.parametrize("family", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_dry_run_names_a_source_for_every_setting_of_every_model_and_family(cli, family, model, tmp_path):
    code, out, err = cli("train", "--dataset", DATASETS[family], "--model", model, "--out", tmp_path / "r", "--dry-run")
    assert code == 0, err
    header, *rows = out.splitlines()[1:]
    at = header.index("source")
    sources = {row.split()[0]: row[at:] for row in rows}
    assert set(sources) == set(flat_dict(build_config({"data.dataset": DATASETS[family], "model.name": model})))
    for key, source in sources.items():
        assert re.fullmatch(r"default|command line|recipe [\w-]+|chosen for \S+ and \S+", source), (key, source)
    assert sources["model.name"] == "command line" and sources["train.batch_size"].startswith("recipe ")
    assert not (tmp_path / "r").exists()
