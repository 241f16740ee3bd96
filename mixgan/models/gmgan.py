"""Unsupervised GM-GAN (Ben-Yosef & Weinshall 2018): a Gaussian-mixture latent prior.

Static or dynamic by ``prior.dynamic``; the losses are the plain GAN's, the difference is
where z comes from. Sampling can pick a component and scale every covariance by s^2.
"""
from .base import GANModel


class GMGAN(GANModel):
    name = "gmgan"
    mixture = True
