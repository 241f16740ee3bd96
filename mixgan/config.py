"""Typed settings: dataclasses, loadable from TOML, overridable with ``key=value``.

Resolution order: dataclass defaults, then the presets (:func:`presets`: the dataset family's, the
family and model's, the family and device's, the family, device and model's, the dataset's), then a
TOML file, then command-line overrides; settings that come with a switch a preset turned on
(``WITH_SWITCH``) apply unless the user turned it off or set them. The
resolved config is written into every run directory as ``config.toml`` and read back by
:func:`load_config`.
"""
from __future__ import annotations

import dataclasses
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


@dataclass
class ModelConfig:
    name: str = "gmgan"
    arch: str = "auto"  # auto | mlp | dcgan | resnet | cgan-mlp
    loss: str = "ns"  # ns (non-saturating) | hinge
    spectral_norm: bool = False
    width: int = 64  # conv base channels, or hidden units of the MLP bodies
    k: int = 5  # IC-GAN: neighbours per instance
    embedding: str = "classifier"  # IC-GAN: classifier | selfsup | pixels
    # cgan on conv bodies: auto = conditional BatchNorm in G, projection in D; concat = the paper's
    condition: str = "auto"
    # cgan, gmgan-supervised: weight of real images paired with a wrong class, scored as fakes by D
    # (a matching-aware D, Reed et al. 2016); cgan: weight of an auxiliary class head on D
    # (cross-entropy of real images for D, of G's samples for G)
    mismatch: float = 0.0
    class_weight: float = 0.0
    info_weight: float = 0.0  # gmgan: weight of the "which Gaussian made this" head (0: the paper's model)
    # gmgan with an encoder E(x) -> (K logits, z-hat) trained with G (docs/gmgan.md, "Clustering with an encoder")
    encoder: bool = False
    # 0 and 5: the better clustering and FID measured on digits (docs/gmgan.md); the tests pin the first settings
    encoder_ce: float = 0.0  # weight of CE(E(G(z_k)), k), for G and E
    encoder_l2: float = 0.0  # weight of |z-hat - eps|^2 on generated images, for G and E
    encoder_real: float = 1.0  # weight of the agreement of E on two augmentations of a real image
    encoder_neighbors: int = 5  # k > 0: pair each real image with one of its k nearest neighbours
    encoder_space: str = "pixels"  # the embedding those neighbours are found in: pixels | selfsup (no labels)
    encoder_init: str = "scratch"  # E's body: D's, from scratch | selfsup: the contrastive encoder, pretrained
    encoder_entropy: float = 2.0  # weight of the entropy of E's mean prediction on real images (all K used)
    encoder_cond_d: bool = True  # D conditioned on the Gaussian: k for G(z_k), E's cluster for a real image
    encoder_balance: str = "entropy"  # agreement of two views: entropy (SCAN) | sinkhorn (equal-share targets, SwAV)
    encoder_heads: int = 1  # cluster heads trained side by side; the lowest-loss one is used (SCAN)
    encoder_selflabel: float = 0.0  # > 0: a view confident above this gives the other view its cluster as a label


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
    # real images in the reference classifier's space (labelled image data only; docs/report.md)
    eval_every: int = 0
    eval_samples: int = 1000


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = ("data", "model", "prior", "train")

# The image preset before docs/quality.md's recipe: the earlier figures (digits, the conditional,
# IC-GAN and GM-GAN benchmarks on fashion-mnist) were measured with it, and their benchmarks pin it.
PREVIOUS_IMAGE_RECIPE: dict[str, Any] = {
    "model.arch": "dcgan", "model.width": 64, "model.loss": "ns", "model.spectral_norm": False,
    "train.lr_g": 2e-4, "train.lr_d": 2e-4, "train.batch_size": 64, "model.condition": "concat",
    "model.mismatch": 0.0, "train.beta1": 0.5, "train.beta2": 0.999, "model.encoder": False, "prior.means": "uniform",
}

# Per dataset family, then per dataset: settings chosen by measurement (docs/toy.md, docs/gmgan.md).
PRESETS: dict[str, dict[str, Any]] = {
    "toy": {
        "model.arch": "mlp", "model.width": 128, "model.embedding": "pixels",
        "prior.latent_dim": 16, "prior.c": 1.0, "prior.sigma": 0.01,
        "train.batch_size": 256, "train.lr_g": 1e-3, "train.lr_d": 1e-3, "train.lr_decay": "linear",
        "train.steps": 6000, "train.beta1": 0.5, "train.ema": True,
        "train.log_every": 100, "train.sample_every": 2500, "train.checkpoint_every": 1000,
    },
    # 0.01 parks Gaussians beside the ring's narrower modes; without R1, seeds 2, 4 and 6 of 0-9 lost
    # modes (two Gaussians on one mode); R1 = 0.1 reaches 8/8 on all ten (docs/toy.md)
    "ring": {"prior.sigma": 0.1, "train.r1": 0.1},
    "npz": {},  # vectors or images: arch "auto" picks by the data's shape
    # the image recipe of docs/quality.md (chosen on fashion-mnist at equal wall-clock against a script DCGAN)
    "image": {
        "model.arch": "dcgan", "model.width": 64, "model.loss": "hinge", "model.spectral_norm": True,
        # K = 30: on fashion-mnist at 10 CPU-minutes the paper's GM-GAN keeps its recall at the baseline's or
        # above (3 seeds; K = 10: under it on 3 of 4), and the supervised model gets K = 3N (docs/quality.md);
        # gmgan itself takes the encoder's K = 10 (MODEL_PRESETS)
        "prior.latent_dim": 64, "prior.c": 1.0, "prior.sigma": 1.0, "prior.components": 30,
        "train.batch_size": 32, "train.lr_g": 5e-4, "train.lr_d": 1e-3,
        # Adam beta (0, 0.9), SNGAN's: at 5,000 steps gmgan FID 70.9 -> 50.8 and 80.5 -> 42.1 (seeds 0, 1);
        # at 10 CPU-minutes the ratios to the script DCGAN improve on every seed (docs/quality.md)
        "train.beta1": 0.0, "train.beta2": 0.9,
        "train.ema": True,
        # cgan, gmgan-supervised: a matching-aware D; on fashion-mnist at 10 CPU-minutes it took cGAN's
        # conditional accuracy 0.933 -> 0.991 and FID 14.2 -> 10.6 (docs/conditional.md)
        "model.mismatch": 1.0,
        # quality during training: on digits (1,000 samples) about 2% of the run's wall-clock (benchmarks/eval_cost.py)
        "train.eval_every": 500,
    },
    # digits keeps the recipe its figures were measured with (docs/gmgan.md, make demo): the paper's GM-GAN
    "digits": {"train.steps": 3000, "prior.components": 10, "prior.sigma": 1.0, **PREVIOUS_IMAGE_RECIPE},
}

# Per dataset family and model: what one model needs beyond its family's preset (a dataset's own preset still wins).
MODEL_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # the supervised model's Gaussians tighter than gmgan's: on fashion-mnist at 10 CPU-minutes
    # conditional accuracy 0.91 at sigma 1 -> 0.97 at 0.75, FID 17 -> 22 (docs/conditional.md)
    ("image", "gmgan-supervised"): {"prior.sigma": 0.75},
    # GM-GAN with an encoder whose clusters condition D (docs/gmgan.md): on fashion-mnist, FID 24.0 against
    # the paper's model's 42-54 at 5,000 steps, 0.22-0.25x the script DCGAN's at 10 CPU-minutes (docs/quality.md);
    # `model.encoder=false` is the paper's model with the family's prior
    ("image", "gmgan"): {"model.encoder": True},
}

# Per dataset family and device type, then per family, device type and model: what the device changes (a
# dataset's own preset still wins). On a GPU these small networks are bound by per-operation overhead, not
# arithmetic, so a larger batch costs no time (docs/quality.md, "GPU"); on the CPU it costs steps, which the
# 10-minute budget lacks.
DEVICE_PRESETS: dict[tuple[str, ...], dict[str, Any]] = {
    # fashion-mnist at 5,000 steps: gan FID 73.4 (batch 32) -> 54.5 (64) -> 50.3 (128) -> 43.7 (128, Adam 1e-3 / 2e-3)
    ("image", "cuda"): {"train.batch_size": 128, "train.lr_g": 1e-3, "train.lr_d": 2e-3},
    # gan at its estimated GPU share of the script's steps (5,000): FID 26.9 at 2e-3 / 4e-3 -> 23.4 at 3e-3 / 6e-3,
    # 0.456x and 0.582x the script's on seeds 0 and 1 (the other models are measured at 1e-3 / 2e-3 only)
    ("image", "cuda", "gan"): {"train.lr_g": 3e-3, "train.lr_d": 6e-3},
}


def device_type(name: str) -> str:
    """'cuda' or 'cpu' for a ``train.device`` value; 'auto' is CUDA where CUDA is available."""
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if name.startswith("cuda") else "cpu"


# Settings that come with a switch a preset turns on, and go with it when the user turns it off:
# the encoder's Gaussians are K = 10 one-hot means at sigma 0.15, apart enough to be its clusters.
WITH_SWITCH: dict[str, dict[str, Any]] = {
    "model.encoder": {"prior.means": "onehot", "prior.components": 10, "prior.sigma": 0.15},
}


def _field_types(section: str) -> dict[str, Any]:
    cls = {"data": DataConfig, "model": ModelConfig, "prior": PriorConfig, "train": TrainConfig}[section]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _resolve_key(key: str) -> tuple[str, str]:
    """Map ``sigma`` or ``prior.sigma`` to ("prior", "sigma"); bare names must be unique."""
    if key == "out":
        return "", "out"
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
    if isinstance(typ, types.UnionType):
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if typ is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise MixganError(f"setting '{key}' expects {typ.__name__}, got {value!r}") from None


def set_value(cfg: Config, key: str, value: Any) -> None:
    section, name = _resolve_key(key)
    if not section:
        cfg.out = str(value)
        return
    typ = _field_types(section)[name]
    setattr(getattr(cfg, section), name, _coerce(key, typ, value))


def parse_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise MixganError(f"override '{text}' is not of the form key=value")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _flatten(tree: dict[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise MixganError(f"{source}: unknown section [{key}]")
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return _flatten(tomllib.loads(path.read_text()), str(path))
    except FileNotFoundError:
        raise MixganError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MixganError(f"config file {path} is not valid TOML: {exc}") from None


def dataset_family(name: str) -> str:
    if str(name).startswith("npz:"):
        return "npz"
    return "toy" if name in ("ring", "grid") else "image"


def presets(dataset: str, model: str, device: str) -> dict[str, Any]:
    """The preset settings for a dataset, model and ``train.device`` value, later ones winning."""
    family, kind = dataset_family(dataset), device_type(device)
    return {**PRESETS[family], **MODEL_PRESETS.get((family, model), {}), **DEVICE_PRESETS.get((family, kind), {}),
            **DEVICE_PRESETS.get((family, kind, model), {}), **PRESETS.get(dataset, {})}


def build_config(values: dict[str, Any] | None = None, config_file: str | Path | None = None,
                 overrides: list[str] | None = None) -> Config:
    """Resolve a Config from a TOML file, a dict of settings and ``key=value`` overrides."""
    user: dict[str, Any] = {}
    if config_file:
        user.update(read_toml(config_file))
    user.update(values or {})
    for text in overrides or []:
        key, value = parse_override(text)
        user[key] = value
    cfg = Config()
    given = {_resolve_key(k): v for k, v in user.items()}
    dataset = str(given.get(("data", "dataset"), cfg.data.dataset))
    model = str(given.get(("model", "name"), cfg.model.name))
    preset = presets(dataset, model, str(given.get(("train", "device"), cfg.train.device)))
    for key, value in preset.items():
        set_value(cfg, key, value)
    for key, value in user.items():
        set_value(cfg, key, value)
    for switch, group in WITH_SWITCH.items():
        section, name = _resolve_key(switch)
        if preset.get(switch) and getattr(getattr(cfg, section), name):  # a preset turned it on, the user left it
            for key, value in group.items():
                if _resolve_key(key) not in given and key not in PRESETS.get(dataset, {}):
                    set_value(cfg, key, value)
    validate(cfg)
    return cfg


AUGMENTS = ("translation", "cutout")


def augment_error(policy: str) -> str:
    """The one-line complaint about an augmentation policy, or "" when it is valid."""
    bad = [p for p in policy.split(",") if p.strip() and p.strip() not in AUGMENTS]
    return f"augment must be a comma list of {', '.join(AUGMENTS)}, got '{bad[0]}'" if bad else ""


def validate(cfg: Config) -> None:
    p, t, m = cfg.prior, cfg.train, cfg.model
    checks = [
        (p.components >= 1, f"components must be >= 1, got {p.components}"),
        (p.latent_dim >= 1, f"latent_dim must be >= 1, got {p.latent_dim}"),
        (p.c > 0, f"c must be > 0, got {p.c}"),
        (p.sigma > 0, f"sigma must be > 0, got {p.sigma}"),
        (p.covariance in ("diag", "full"), f"covariance must be 'diag' or 'full', got '{p.covariance}'"),
        (t.steps >= 0, f"steps must be >= 0, got {t.steps}"),
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
        (m.width >= 1 and m.k >= 1, "width and k must be >= 1"),
        (not augment_error(t.augment), augment_error(t.augment)),
        (t.r1 >= 0, f"r1 must be >= 0, got {t.r1}"),
        (t.max_seconds >= 0, f"max_seconds must be >= 0, got {t.max_seconds}"),
        (m.info_weight >= 0, f"info_weight must be >= 0, got {m.info_weight}"),
        (min(m.encoder_ce, m.encoder_l2, m.encoder_real, m.encoder_entropy) >= 0,
         "encoder_ce, encoder_l2, encoder_real and encoder_entropy must be >= 0"),
        (m.encoder_neighbors >= 0, f"encoder_neighbors must be >= 0, got {m.encoder_neighbors}"),
        (m.condition in ("auto", "concat"), f"condition must be 'auto' or 'concat', got '{m.condition}'"),
        (min(m.class_weight, m.mismatch) >= 0, "class_weight and mismatch must be >= 0"),
        (m.encoder_balance in ("entropy", "sinkhorn"),
         f"encoder_balance must be 'entropy' or 'sinkhorn', got '{m.encoder_balance}'"),
        (m.encoder_space in ("pixels", "selfsup"),
         f"encoder_space must be 'pixels' or 'selfsup', got '{m.encoder_space}'"),
        (m.encoder_init in ("scratch", "selfsup"),
         f"encoder_init must be 'scratch' or 'selfsup', got '{m.encoder_init}'"),
        (m.encoder_heads >= 1, f"encoder_heads must be >= 1, got {m.encoder_heads}"),
        (0 <= m.encoder_selflabel < 1, f"encoder_selflabel must be in [0, 1), got {m.encoder_selflabel}"),
        (not m.encoder or m.name == "gmgan", f"model.encoder is for model 'gmgan', not '{m.name}'"),
        (not (m.encoder and m.info_weight), "model.encoder and model.info_weight are alternatives: set one"),
        (p.means in ("uniform", "onehot"), f"means must be 'uniform' or 'onehot', got '{p.means}'"),
        (p.means != "onehot" or p.latent_dim >= p.components,
         f"means=onehot needs latent_dim >= components, got {p.latent_dim} < {p.components}"),
        (0 < cfg.data.test_fraction < 1, "test_fraction must be in (0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise MixganError(message)


def dump_toml(cfg: Config) -> str:
    import tomli_w

    tree = cfg.to_dict()
    out = tree.pop("out")
    return tomli_w.dumps({"out": out, **tree})


# Settings added after runs were already being made, with the value that reproduces those runs:
# a resolved config.toml that lacks one was trained with this behaviour, not with today's default.
LEGACY_VALUES: dict[str, Any] = {"model.condition": "concat", "model.mismatch": 0.0}


def load_config(path: str | Path) -> Config:
    """Read a resolved ``config.toml`` back (no presets: every value is in the file, or it predates
    the setting and takes its ``LEGACY_VALUES`` entry)."""
    cfg = Config()
    for key, value in {**LEGACY_VALUES, **read_toml(path)}.items():
        set_value(cfg, key, value)
    return cfg
