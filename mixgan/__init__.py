"""mixgan: mixture GANs (GM-GAN, cGAN, AC-GAN, IC-GAN) with an offline evaluation suite."""
from .api import Run, load, train
from .config import Config, build_config
from .errors import MixganError

__version__ = "0.1.0"

__all__ = ["Config", "MixganError", "Run", "build_config", "load", "train", "__version__"]
