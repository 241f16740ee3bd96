"""Typed settings: dataclasses, loadable from TOML, overridable with ``key=value``.

Resolution order, later winning: the dataclass defaults, one recipe (a complete TOML file under
``mixgan/recipes/``, chosen by dataset and model, or named with ``recipe``), the user's TOML file
(``--config``), then single settings (``--set``, command-line flags, a dict from Python). A recipe's
``[cuda]`` table applies only when training on CUDA, and :func:`resolve` reports each value it took.
The resolved config is written into every run directory as ``config.toml``, each value with its
source, and read back by :func:`load_config`, which migrates files written by earlier versions.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MixganError


@dataclass
class DataConfig:
    dataset: str = "digits"
    data_dir: str = ""
    test_fraction: float = 0.2  # for datasets that ship without a test split
    resolution: int = 0  # image side in pixels; 0: as the data comes (a folder: its square size, else 64)
    channels: int = 0  # 1 grey or 3 RGB; 0: as the data comes (a folder: 3 if any image has colour)
    workers: int = -1  # data loader processes for shards: (-1: min(4, CPUs - 1); 0: in the training process)
    # a folder's transparent pixels (RGBA, LA, P with transparency) are laid on this colour:
    # white, black or any colour like "#808080"
    background: str = "white"


@dataclass
class ModelConfig:
    name: str = "gmgan"
    arch: str = "auto"  # auto | mlp | dcgan | resnet | cgan-mlp
    loss: str = "ns"  # ns (non-saturating) | hinge
    spectral_norm: bool = False
    width: int = 64  # conv base channels, or hidden units of the MLP bodies; 0: by the image side (nets.auto_width)
    k: int = 5  # IC-GAN: neighbours per instance
    embedding: str = "classifier"  # IC-GAN: classifier | selfsup | pixels | projection
    # IC-GAN and the encoder's neighbours: exact search up to knn_threshold instances, a faiss IVF index above
    knn: str = "auto"  # auto | exact | faiss
    knn_threshold: int = 200_000
    # cgan on conv bodies: auto = conditional BatchNorm in G, projection in D; concat = the paper's
    condition: str = "auto"
    # cgan, gmgan-supervised: weight of real images paired with a wrong class, scored as fakes by D
    # (a matching-aware D, Reed et al. 2016); cgan: weight of an auxiliary class head on D
    # (cross-entropy of real images for D, of G's samples for G)
    mismatch: float = 0.0
    class_weight: float = 0.0
    info_weight: float = 0.0  # gmgan: weight of the "which Gaussian made this" head (0: the paper's model)


@dataclass
class EncoderConfig:
    """GM-GAN's encoder E(x) -> (K logits, z-hat), trained with G (docs/gmgan.md, "Clustering")."""

    enabled: bool = False
    ce: float = 0.0  # weight of CE(E(G(z_k)), k), for G and E
    l2: float = 0.0  # weight of |z-hat - eps|^2 on generated images, for G and E
    real: float = 1.0  # weight of the agreement of E on two views of a real image
    neighbors: int = 5  # k > 0: pair each real image with one of its k nearest neighbours
    space: str = "pixels"  # the embedding those neighbours are found in: pixels | selfsup (no labels)
    init: str = "scratch"  # E's body: D's, from scratch | selfsup: the contrastive encoder, pretrained
    entropy: float = 2.0  # weight of the entropy of E's mean prediction on real images (all K used)
    cond_d: bool = True  # D conditioned on the Gaussian: k for G(z_k), E's cluster for a real image
    real_cluster: str = "argmax"  # that cluster: E's argmax | balanced: the batch's equal-share assignment
    balance: str = "entropy"  # agreement of two views: entropy (SCAN) | sinkhorn (equal-share targets, SwAV)
    heads: int = 1  # cluster heads trained side by side; the lowest-loss one is used (SCAN)
    selflabel: float = 0.0  # > 0: a view confident above this gives the other view its cluster as a label
    selfsup_steps: int = 600  # training steps of the contrastive encoder (init or space 'selfsup'); cached per setting
    selfsup_batch: int = 256  # its batch size


@dataclass
class PriorConfig:
    latent_dim: int = 64
    components: int = 10
    c: float = 1.0
    sigma: float = 1.0
    dynamic: bool = False
    covariance: str = "diag"  # diag | full
    means: str = "uniform"  # uniform in [-c, c]^d | onehot: c times the k-th unit vector (needs d >= K)


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    lr_decay: str = "none"  # none | linear (to 0 at the last step)
    beta1: float = 0.5
    beta2: float = 0.999
    d_steps: int = 1
    ema: bool = False
    ema_decay: float = 0.999
    augment: str = ""  # differentiable augmentation of every image D sees: "", or a comma list of translation, cutout
    r1: float = 0.0  # weight gamma of the zero-centred R1 penalty gamma/2 * E|grad_x D(x)|^2 on real images (0: off)
    max_seconds: float = 0.0  # stop after this much training wall-clock (0: off); resume is exact only for step-bounded runs
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = False  # bf16 autocast on CUDA
    channels_last: bool = False
    compile: bool = False
    tensorboard: bool = False
    # FID, KID, precision and recall every eval_every steps (0: off), of eval_samples samples against as many
    # real images in the reference classifier's space (labelled image data only; docs/report.md); its time is
    # left out of it_per_s and of max_seconds
    eval_every: int = 0
    eval_samples: int = 1000


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recipe: str = "auto"  # a recipe name under mixgan/recipes/, a path to one, or auto (by dataset and model)
    out: str = ""
    # where each value came from ("default", "recipe NAME", "file PATH", ...): shown by --dry-run and info
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        tree = dataclasses.asdict(self)
        tree.pop("sources")
        return tree


SECTIONS = ("data", "model", "encoder", "prior", "train")
TOP_LEVEL = ("recipe", "out")
CLASSES = {"data": DataConfig, "model": ModelConfig, "encoder": EncoderConfig, "prior": PriorConfig,
           "train": TrainConfig}
CONFIG_VERSION = 2

# Keys of earlier versions and the key each became; user input and old run directories may use them.
RENAMED: dict[str, str] = {"model.encoder": "encoder.enabled", "encoder": "encoder.enabled",
                           **{f"{prefix}encoder_{name}": f"encoder.{name}"
                              for prefix in ("", "model.")
                              for name in ("ce", "l2", "real", "neighbors", "space", "init", "entropy", "cond_d",
                                           "balance", "heads", "selflabel")}}


def device_type(name: str) -> str:
    """'cuda' or 'cpu' for a ``train.device`` value; 'auto' is CUDA where CUDA is available."""
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if name.startswith("cuda") else "cpu"


def _field_types(section: str) -> dict[str, Any]:
    cls = CLASSES[section]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _resolve_key(key: str) -> tuple[str, str]:
    """Map ``sigma`` or ``prior.sigma`` to ("prior", "sigma"); bare names must be unique; keys of
    earlier versions (``RENAMED``) map to their new place."""
    key = RENAMED.get(key, key)
    if key in TOP_LEVEL:
        return "", key
    if "." in key:
        section, name = key.split(".", 1)
        if section in SECTIONS and name in _field_types(section):
            return section, name
        raise MixganError(f"unknown setting '{key}'")
    hits = [s for s in SECTIONS if key in _field_types(s)]
    if not hits:
        raise MixganError(f"unknown setting '{key}'")
    if len(hits) > 1:
        raise MixganError(f"setting '{key}' is ambiguous: write {' or '.join(h + '.' + key for h in hits)}")
    return hits[0], key


def _coerce(key: str, typ: Any, value: Any) -> Any:
    """``value`` as ``typ``: text (from --set) is parsed; any other value must already be of the
    type (a TOML ``true`` is no number, a number no string)."""
    if isinstance(typ, types.UnionType):
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
    wrong = MixganError(f"setting '{key}' expects {typ.__name__}, got {value!r}")
    if isinstance(value, str) and typ is not str:
        value = value.strip()
        if typ is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise wrong
        try:
            value = float(value) if typ is float else int(value)
        except ValueError:
            raise wrong from None
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if isinstance(value, bool):
        raise wrong
    if typ is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise wrong
    if typ is float:
        if isinstance(value, (int, float)):
            return float(value)
        raise wrong
    if isinstance(value, (int, float)):
        raise wrong
    return str(value)


def set_value(cfg: Config, key: str, value: Any) -> None:
    section, name = _resolve_key(key)
    if not section:
        setattr(cfg, name, str(value))
        return
    typ = _field_types(section)[name]
    setattr(getattr(cfg, section), name, _coerce(key, typ, value))


def parse_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise MixganError(f"override '{text}' is not of the form key=value")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _flatten(tree: dict[str, Any], source: str, sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            if key not in sections:
                raise MixganError(f"{source}: unknown section [{key}]")
            for sub, v in _flatten(value, source).items() if key == "cuda" else value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat


MAX_SETTINGS_BYTES = 1 << 20  # a settings file or recipe larger than this is refused unread


def _read_text(path: Path, what: str) -> str:
    """A settings file's text: a regular file of at most MAX_SETTINGS_BYTES (a device, a FIFO or a
    huge file is refused before anything is read), opened without blocking."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise MixganError(f"{what} {path} does not exist or is not a file") from None
    except OSError as exc:
        raise MixganError(f"cannot read {what} {path} ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise MixganError(f"{what} {path} does not exist or is not a file")
        if not stat.S_ISREG(info.st_mode):
            raise MixganError(f"{what} {path} is not a regular file")
        if info.st_size > MAX_SETTINGS_BYTES:
            raise MixganError(f"{what} {path} is {info.st_size} bytes; a settings file has at most {MAX_SETTINGS_BYTES}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_SETTINGS_BYTES + 1)
    except OSError as exc:
        raise MixganError(f"cannot read {what} {path} ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_SETTINGS_BYTES:
        raise MixganError(f"{what} {path} is larger than {MAX_SETTINGS_BYTES} bytes")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise MixganError(f"{what} {path} is not valid TOML: {exc}") from None


def _read_tree(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(_read_text(path, what))
    except tomllib.TOMLDecodeError as exc:
        raise MixganError(f"{what} {path} is not valid TOML: {exc}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """A settings file as flat ``section.name`` keys."""
    path = Path(path)
    return _flatten(_read_tree(path, "config file"), str(path))


# ---------------------------------------------------------------------------------------- recipes

RECIPES_DIR = Path(__file__).parent / "recipes"
MODEL_TABLE = RECIPES_DIR / "models.toml"  # [FAMILY.MODEL]: what a model changes on a family's base
VARIANT_TABLE = RECIPES_DIR / "variants.toml"  # [NAME]: named variants, each on the base it names


def dataset_family(name: str) -> str:
    if str(name).startswith("npz:"):
        return "npz"
    return "toy" if name in ("ring", "grid") else "image"


def base_names() -> list[str]:
    """The base recipes: one file per dataset family (``toy``, ``ring``, ``image``, ``digits``, ``npz``)."""
    tables = {MODEL_TABLE.stem, VARIANT_TABLE.stem}
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml") if p.stem not in tables)


def _model_table() -> dict[str, dict[str, Any]]:
    """models.toml as ``{"FAMILY-MODEL": entry}``."""
    tree, out = _read_tree(MODEL_TABLE, "recipe table"), {}
    for family, models in tree.items():
        if family not in base_names() or not isinstance(models, dict):
            raise MixganError(f"{MODEL_TABLE}: [{family}] is not a dataset family ({', '.join(base_names())})")
        for model, entry in models.items():
            if not isinstance(entry, dict) or "base" in entry:
                raise MixganError(f"{MODEL_TABLE}: [{family}.{model}] must be a table of settings, without a base")
            out[f"{family}-{model}"] = entry
    return out


def _variant_table() -> dict[str, dict[str, Any]]:
    tree = _read_tree(VARIANT_TABLE, "recipe table")
    for name, entry in tree.items():
        if not isinstance(entry, dict):
            raise MixganError(f"{VARIANT_TABLE}: '{name}' must be a table [{name}]")
    return tree


def recipe_names() -> list[str]:
    """Every shipped recipe: the bases, the models' entries (``image-gmgan``) and the variants.
    ``FAMILY-MODEL`` also names the base for a model without an entry."""
    return [*base_names(), *_model_table(), *_variant_table()]


def _is_path(name: str) -> bool:
    return name.endswith(".toml") or "/" in name


@dataclass
class Layer:
    """One step of a recipe: a base file, a model's entry, a variant or a user's file."""

    name: str
    path: Path
    values: dict[str, Any]  # flat section.name keys
    cuda: dict[str, Any]  # the [cuda] table: applied only when training on CUDA
    about: str = ""
    implied: bool = False  # FAMILY-MODEL without an entry: sets model.name alone


def _layer(name: str, path: Path, tree: dict[str, Any], implied: bool = False) -> tuple[Layer, str | None]:
    tree = dict(tree)
    about, base = tree.pop("about", ""), tree.pop("base", None)
    if not isinstance(about, str) or not (base is None or isinstance(base, str)):
        raise MixganError(f"recipe {name}: 'about' and 'base' must be strings")
    flat = _flatten(tree, f"recipe {name}", SECTIONS + ("cuda",))
    cuda = {k[len("cuda."):]: v for k, v in flat.items() if k.startswith("cuda.")}
    values = {k: v for k, v in flat.items() if not k.startswith("cuda.")}
    for key in [*values, *cuda]:
        if _resolve_key(key)[0] == "" and key != "out":
            raise MixganError(f"recipe {name}: '{key}' cannot be set by a recipe")
    if not about and path not in (MODEL_TABLE, VARIANT_TABLE):  # a whole file: its first comment line
        about = next((line[1:].strip() for line in _read_text(path, "recipe").splitlines() if line.startswith("#")), "")
    return Layer(name, path, values, cuda, about, implied), base


def _layers(name: str, seen: tuple[str, ...] = ()) -> list[Layer]:
    """The layers of recipe ``name``, its base's first."""
    if name in seen:
        raise MixganError(f"recipe {name}: its chain of bases loops ({' -> '.join([*seen, name])})")
    seen = (*seen, name)
    if _is_path(name):
        path = Path(name)
        layer, base = _layer(name, path, _read_tree(path, "recipe"))
    elif name in base_names():
        path = RECIPES_DIR / f"{name}.toml"
        layer, base = _layer(name, path, _read_tree(path, "recipe"))
    elif name in (variants := _variant_table()):
        layer, base = _layer(name, VARIANT_TABLE, variants[name])
    else:
        family = next((f for f in base_names() if name.startswith(f + "-") and len(name) > len(f) + 1), None)
        if family is None:
            raise MixganError(f"unknown recipe '{name}' (shipped: {', '.join(recipe_names())}, or FAMILY-MODEL "
                              "for any model; or give a .toml path)")
        model = name[len(family) + 1:]
        entry = _model_table().get(name)
        layer, _ = _layer(name, MODEL_TABLE, entry or {}, implied=entry is None)
        layer.values = {"model.name": model, **layer.values}
        return _layers(family, seen) + [layer]
    return (_layers(base, seen) if base else []) + [layer]


@dataclass
class Recipe:
    """A base recipe with the deltas on it, resolved: ``values`` is what it sets, ``layers`` who set what."""

    name: str
    layers: list[Layer]
    values: dict[str, Any] = field(default_factory=dict)  # flat section.name keys, every layer merged
    cuda: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, name: str) -> "Recipe":
        layers = _layers(str(name))
        recipe = cls(str(name), layers)
        for layer in layers:
            recipe.values.update({canonical_key(k): v for k, v in layer.values.items()})
            recipe.cuda.update({canonical_key(k): v for k, v in layer.cuda.items()})
        return recipe

    @property
    def chain(self) -> str:
        """The layers it is made of, base first: ``image + image-gmgan``."""
        return " + ".join(layer.name for layer in self.layers if not layer.implied)

    @property
    def files(self) -> list[Path]:
        return list(dict.fromkeys(layer.path for layer in self.layers if not layer.implied))

    @property
    def summary(self) -> str:
        """What the recipe trains: the description of its last layer that has one."""
        return next((layer.about for layer in reversed(self.layers) if layer.about), "")

    def sources(self) -> dict[str, str]:
        """Each setting it sets -> the layer that set it (``recipe image-gmgan``); [cuda] values apart."""
        out = {}
        for layer in self.layers:
            out.update({canonical_key(k): f"recipe {layer.name}" for k in layer.values})
            out.update({"cuda." + canonical_key(k): f"recipe {layer.name} [cuda]" for k in layer.cuda})
        return out

    def to_toml(self) -> str:
        """The resolved recipe as a complete file, each value with the layer that set it."""
        sources = self.sources()
        lines = [f"# {self.name} = {self.chain}: resolved, each value with the recipe that set it"]
        if self.summary:
            lines.append(f"# {self.summary}")
        for prefix, values in (("", self.values), ("cuda.", self.cuda)):
            for section in SECTIONS:
                keys = [f"{section}.{name}" for name in _field_types(section) if f"{section}.{name}" in values]
                if keys:
                    lines += ["", f"[{prefix}{section}]"]
                    lines += [f"{k.split('.', 1)[1]} = {_toml_value(values[k])}  # {sources[prefix + k][7:]}"
                              for k in keys]
        return "\n".join(lines) + "\n"


def choose_recipe(dataset: str, model: str, encoder: bool | None = None) -> Recipe:
    """The recipe of a dataset and model: ``{dataset}-{model}`` where the dataset has a base of its
    own (ring, digits), else ``{family}-{model}``. Where the user fixes ``encoder.enabled`` to what
    that recipe does not do, its ``-paper`` variant (no encoder) is chosen, or the encoder recipe
    it is the variant of."""
    stem = str(dataset) if str(dataset) in base_names() else dataset_family(dataset)
    name = f"{stem}-{model}"
    recipe = Recipe.read(name)
    if encoder is not None and bool(recipe.values.get("encoder.enabled")) != encoder:
        sibling = f"{name}-paper" if not encoder else name.removesuffix("-paper")
        if sibling != name and sibling in recipe_names():
            return Recipe.read(sibling)
    return recipe


# ------------------------------------------------------------------------------------- resolution

def canonical_key(key: str) -> str:
    section, name = _resolve_key(key)
    return f"{section}.{name}" if section else name


def build_config(values: dict[str, Any] | None = None, config_file: str | Path | None = None,
                 overrides: list[str] | None = None, *, values_source: str = "argument") -> Config:
    """Resolve a Config: defaults < recipe < ``config_file`` < ``values`` < ``overrides`` (``key=value``).

    ``cfg.sources`` names where each setting came from."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file:
        layers.append((f"file {config_file}", read_toml(config_file)))
    layers.append((values_source, dict(values or {})))
    layers.append(("--set", dict(parse_override(t) for t in overrides or [])))
    user: dict[str, tuple[Any, str]] = {}
    for source, layer in layers:
        for key, value in layer.items():
            user[canonical_key(key)] = (value, source)

    cfg = Config()
    for key, value in user.items():  # the keys that pick the recipe
        if key in ("recipe", "data.dataset", "model.name", "encoder.enabled"):
            set_value(cfg, key, value[0])
    encoder = cfg.encoder.enabled if "encoder.enabled" in user else None
    recipe = (Recipe.read(cfg.recipe) if cfg.recipe != "auto"
              else choose_recipe(cfg.data.dataset, cfg.model.name, encoder))

    cfg = Config()
    sources = {key: "default" for key in flat_dict(cfg)}
    recipe_sources = recipe.sources()
    for key, value in recipe.values.items():
        set_value(cfg, key, value)
        sources[key] = recipe_sources[key]
    device = user["train.device"][0] if "train.device" in user else cfg.train.device
    if device_type(str(device)) == "cuda":
        for key, value in recipe.cuda.items():
            set_value(cfg, key, value)
            sources[key] = recipe_sources["cuda." + key]
    for key, (value, source) in user.items():
        set_value(cfg, key, value)
        sources[key] = source
    if "recipe" not in user:
        sources["recipe"] = f"chosen for {cfg.data.dataset} and {cfg.model.name}"
    cfg.recipe = recipe.name
    cfg.sources = sources
    validate(cfg)
    return cfg


def device_values(cfg: Config) -> dict[str, Any]:
    """The settings a recipe's ``[cuda]`` table chose for this config (empty off CUDA)."""
    flat = flat_dict(cfg)
    return {k: flat[k] for k, src in cfg.sources.items() if src.endswith("[cuda]")}


def flat_dict(cfg: Config) -> dict[str, Any]:
    """Every setting as ``section.name`` (and the top-level ``recipe``, ``out``) -> value."""
    tree = cfg.to_dict()
    flat = {k: tree[k] for k in TOP_LEVEL}
    for section in SECTIONS:
        flat.update({f"{section}.{k}": v for k, v in tree[section].items()})
    return flat


AUGMENTS = ("color", "translation", "cutout")  # the operations of nets.augment.DiffAugment.OPS


def augment_error(policy: str) -> str:
    """The one-line complaint about an augmentation policy, or "" when it is valid."""
    bad = [p for p in policy.split(",") if p.strip() and p.strip() not in AUGMENTS]
    return f"augment must be a comma list of {', '.join(AUGMENTS)}, got '{bad[0]}'" if bad else ""


def _colour(value) -> bool:
    """Whether ``value`` names a colour (data.background)."""
    from PIL import ImageColor

    try:
        ImageColor.getrgb(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


MAX_SAMPLES = 1_000_000  # the most samples one command draws (train.eval_samples, sample --n)
# Generous upper bounds: beyond them a value is a typo, and would allocate or run without end.
LIMITS: dict[str, int] = {
    "data.resolution": 1024, "data.workers": 256, "prior.components": 100_000, "prior.latent_dim": 65_536,
    "model.width": 8192, "model.k": 10_000, "train.batch_size": 65_536, "train.steps": 10 ** 9,
    "train.d_steps": 100, "train.eval_samples": MAX_SAMPLES, "train.keep_checkpoints": 10_000,
    "encoder.neighbors": 10_000, "encoder.heads": 100, "encoder.selfsup_steps": 10 ** 7,
    "encoder.selfsup_batch": 65_536,
}


def dataset_error(name: str) -> str:
    """The one-line complaint about a dataset name the data registry does not know, or ""."""
    from .data import dataset_error as unknown

    return unknown(name)


def _registry_checks(cfg: Config) -> list[tuple[bool, str]]:
    """Names the registries must know: the dataset, the model, the networks' arch and the embedding."""
    from .embeddings import EMBEDDINGS
    from .models import MODELS
    from .nets import ARCHS

    m = cfg.model
    embedding_ok = m.embedding in EMBEDDINGS or re.fullmatch(r"[\w.]+:\w+", m.embedding) is not None
    return [
        (not dataset_error(cfg.data.dataset), dataset_error(cfg.data.dataset)),
        (m.name in MODELS, f"unknown model '{m.name}' (choose from {', '.join(MODELS)})"),
        (m.arch == "auto" or m.arch in ARCHS, f"unknown arch '{m.arch}' (choose from auto, {', '.join(ARCHS)})"),
        (embedding_ok, f"unknown embedding '{m.embedding}' (choose from {', '.join(EMBEDDINGS)}, or module:function)"),
    ]


def validate(cfg: Config) -> None:
    """Refuse, in one line, any setting a run would refuse: types and ranges, then the names the
    registries know. ``build_config`` calls it; so does a resumed or dry run."""
    import math

    flat = flat_dict(cfg)
    for key, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise MixganError(f"setting '{key}' must be a finite number, got {value}")
        if key in LIMITS and value > LIMITS[key]:
            raise MixganError(f"setting '{key}' is at most {LIMITS[key]:,}, got {value:,}")
    p, t, m, e = cfg.prior, cfg.train, cfg.model, cfg.encoder
    d = cfg.data
    checks = [
        (0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, f"beta1 and beta2 must be in [0, 1), got {t.beta1} and {t.beta2}"),
        (d.resolution == 0 or d.resolution >= 8, f"data.resolution must be 0 (auto) or >= 8, got {d.resolution}"),
        (d.channels in (0, 1, 3), f"data.channels must be 0 (auto), 1 or 3, got {d.channels}"),
        (d.workers >= -1, f"data.workers must be >= 0 (or -1: automatic), got {d.workers}"),
        (_colour(d.background), f"data.background must be white, black or a colour like '#808080', got {d.background!r}"),
        (p.components >= 1, f"components must be >= 1, got {p.components}"),
        (p.latent_dim >= 1, f"latent_dim must be >= 1, got {p.latent_dim}"),
        (p.c > 0, f"c must be > 0, got {p.c}"),
        (p.sigma > 0, f"sigma must be > 0, got {p.sigma}"),
        (p.covariance in ("diag", "full"), f"covariance must be 'diag' or 'full', got '{p.covariance}'"),
        (t.steps >= 1, f"steps must be >= 1, got {t.steps}"),
        (0 <= t.seed < 2 ** 63, f"seed must be in 0..2^63-1, got {t.seed}"),
        (t.batch_size >= 1, f"batch_size must be >= 1, got {t.batch_size}"),
        (t.d_steps >= 1, f"d_steps must be >= 1, got {t.d_steps}"),
        (t.lr_g > 0 and t.lr_d > 0, "learning rates must be > 0"),
        (0 <= t.ema_decay < 1, f"ema_decay must be in [0, 1), got {t.ema_decay}"),
        (min(t.log_every, t.sample_every, t.checkpoint_every) >= 1, "log/sample/checkpoint intervals must be >= 1"),
        (t.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
        (t.eval_every >= 0, f"eval_every must be >= 0 (0: off), got {t.eval_every}"),
        (t.eval_samples >= 10, f"eval_samples must be >= 10, got {t.eval_samples}"),
        (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"), f"device must be auto, cpu or cuda, got '{t.device}'"),
        (t.lr_decay in ("none", "linear"), f"lr_decay must be 'none' or 'linear', got '{t.lr_decay}'"),
        (m.loss in ("ns", "hinge"), f"loss must be 'ns' or 'hinge', got '{m.loss}'"),
        (m.width >= 0, f"width must be >= 1, or 0 to follow the image side, got {m.width}"),
        (m.k >= 1, f"k must be >= 1, got {m.k}"),
        (m.knn in ("auto", "exact", "faiss"), f"knn must be 'auto', 'exact' or 'faiss', got '{m.knn}'"),
        (m.knn_threshold >= 1, f"knn_threshold must be >= 1, got {m.knn_threshold}"),
        (not augment_error(t.augment), augment_error(t.augment)),
        (t.r1 >= 0, f"r1 must be >= 0, got {t.r1}"),
        (t.max_seconds >= 0, f"max_seconds must be >= 0, got {t.max_seconds}"),
        (m.info_weight >= 0, f"info_weight must be >= 0, got {m.info_weight}"),
        (min(e.ce, e.l2, e.real, e.entropy) >= 0, "encoder.ce, encoder.l2, encoder.real and encoder.entropy must be >= 0"),
        (e.neighbors >= 0, f"encoder.neighbors must be >= 0, got {e.neighbors}"),
        (m.condition in ("auto", "concat"), f"condition must be 'auto' or 'concat', got '{m.condition}'"),
        (min(m.class_weight, m.mismatch) >= 0, "class_weight and mismatch must be >= 0"),
        (e.balance in ("entropy", "sinkhorn"), f"encoder.balance must be 'entropy' or 'sinkhorn', got '{e.balance}'"),
        (e.real_cluster in ("argmax", "balanced"), f"encoder.real_cluster must be 'argmax' or 'balanced', got '{e.real_cluster}'"),
        (e.space in ("pixels", "selfsup"), f"encoder.space must be 'pixels' or 'selfsup', got '{e.space}'"),
        (e.init in ("scratch", "selfsup"), f"encoder.init must be 'scratch' or 'selfsup', got '{e.init}'"),
        (e.heads >= 1, f"encoder.heads must be >= 1, got {e.heads}"),
        (min(e.selfsup_steps, e.selfsup_batch) >= 1, "encoder.selfsup_steps and encoder.selfsup_batch must be >= 1"),
        (0 <= e.selflabel < 1, f"encoder.selflabel must be in [0, 1), got {e.selflabel}"),
        (not e.enabled or m.name == "gmgan", f"the encoder is for model 'gmgan', not '{m.name}'"),
        (not (e.enabled and m.info_weight), "encoder.enabled and model.info_weight are alternatives: set one"),
        (p.means in ("uniform", "onehot"), f"means must be 'uniform' or 'onehot', got '{p.means}'"),
        (p.means != "onehot" or p.latent_dim >= p.components,
         f"means=onehot needs latent_dim >= components, got {p.latent_dim} < {p.components}"),
        (0 < cfg.data.test_fraction < 1, "test_fraction must be in (0, 1)"),
    ]
    for ok, message in checks + _registry_checks(cfg):
        if not ok:
            raise MixganError(message)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def dump_toml(cfg: Config) -> str:
    """The resolved config as TOML, each value followed by its source as a comment."""
    tree = cfg.to_dict()
    src = cfg.sources

    def line(key: str, name: str, value: Any) -> str:
        return f"{name} = {_toml_value(value)}" + (f"  # {src[key]}" if key in src else "") + "\n"

    text = f"version = {CONFIG_VERSION}\n" + "".join(line(k, k, tree[k]) for k in TOP_LEVEL)
    for section in SECTIONS:
        text += f"\n[{section}]\n" + "".join(line(f"{section}.{k}", k, v) for k, v in tree[section].items())
    return text


_SOURCE_LINE = re.compile(r'^(\w+) = .*  # (.+)$')


def _read_sources(text: str) -> dict[str, str]:
    sources, section = {}, ""
    for raw in text.splitlines():
        if raw.startswith("["):
            section = raw.strip("[] ") + "."
        elif m := _SOURCE_LINE.match(raw):
            sources[(section + m.group(1)) if section else m.group(1)] = m.group(2)
    return sources


PRE_RECIPE = "unknown (written before recipes)"  # the recipe of a version-1 run

# Settings added after version 1, with the value that reproduces the runs made before them.
V1_ABSENT: dict[str, Any] = {"model.condition": "concat", "model.mismatch": 0.0}


def migrate(flat: dict[str, Any]) -> dict[str, Any]:
    """A resolved config of any version as today's flat keys: version 1 (no ``version`` key) had
    the encoder's settings in [model] and predates ``V1_ABSENT``'s settings."""
    version = flat.pop("version", 1)
    if not isinstance(version, int) or version > CONFIG_VERSION:
        raise MixganError(f"config version {version!r} is newer than this mixgan understands ({CONFIG_VERSION})")
    if version == 1:
        flat = {**V1_ABSENT, **{RENAMED.get(k, k): v for k, v in flat.items()}}
        flat.setdefault("recipe", PRE_RECIPE)
    return flat


def load_config(path: str | Path) -> Config:
    """Read a resolved ``config.toml`` back: every value is in the file (after :func:`migrate`)."""
    path = Path(path)
    cfg = Config()
    for key, value in migrate(read_toml(path)).items():
        set_value(cfg, key, value)
    cfg.sources = _read_sources(path.read_text())
    return cfg


ENV_CAPS = {"MIXGAN_MAX_STEPS": "the steps a command trains (train.steps beyond its start, encoder.selfsup_steps) "
                                "and every interval of the step schedule",
            "MIXGAN_MAX_SAMPLES": "sample counts (train.eval_samples; evaluate, tradeoff, cluster and sample --n)"}


def env_cap(name: str) -> int | None:
    """The positive integer in the environment variable ``name`` (a key of :data:`ENV_CAPS`), or None.

    These caps make every command and ``mixgan.train`` quick, for a check that a script or an
    example runs (the documentation's examples run under them in the test suite)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise MixganError(f"{name} must be a positive integer, got {text!r}")
    return int(text)


def capped(n: int, name: str = "MIXGAN_MAX_SAMPLES") -> int:
    """``n``, at most the cap in ``$name`` where it is set."""
    cap = env_cap(name)
    return n if cap is None else min(n, cap)


def apply_env_caps(cfg: Config, start: int = 0) -> None:
    """Lower ``cfg``'s steps to ``$MIXGAN_MAX_STEPS`` beyond ``start`` (the step a resumed run
    continues from), its schedule's intervals to that many steps (so a capped run still logs,
    draws, checkpoints and evaluates), and its samples to ``$MIXGAN_MAX_SAMPLES``; each lowered
    value names the variable as its source."""
    steps, samples = env_cap("MIXGAN_MAX_STEPS"), env_cap("MIXGAN_MAX_SAMPLES")
    lowered = []
    if steps is not None:
        lowered += [(key, cap, "MIXGAN_MAX_STEPS") for key, cap in (
            ("train.steps", start + steps), ("encoder.selfsup_steps", steps), ("train.log_every", steps),
            ("train.sample_every", steps), ("train.checkpoint_every", steps), ("train.eval_every", steps))]
    if samples is not None:
        lowered.append(("train.eval_samples", samples, "MIXGAN_MAX_SAMPLES"))
    for key, cap, source in lowered:
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) > cap:
            set_value(cfg, key, cap)
            cfg.sources[key] = source

