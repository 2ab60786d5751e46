"""Chapter 6: generative models -- AE, VAE, VQ-VAE, GAN and diffusion, judged by one yardstick.

* :mod:`.autoencoders` -- :class:`Autoencoder`, :class:`VAE` (Kingma & Welling, 2013),
  :class:`VQVAE` (van den Oord et al., 2017) and the autoregressive prior over its codes
* :mod:`.gan`          -- DCGAN (Radford et al., 2015) trained by the GAN game (Goodfellow et al., 2014)
* :mod:`.diffusion`    -- :class:`GaussianDiffusion` (DDPM, Ho et al., 2020; DDIM, Song et al., 2021;
  classifier-free guidance, Ho & Salimans, 2022) and the noise-predicting :class:`UNet`
* :mod:`.judge`        -- the yardstick: a classifier trained on real images judges every model's samples
* :mod:`.recipes`      -- the chapter's settings per scale, training functions, samplers and model cache
"""

from .autoencoders import (
    VAE,
    VQVAE,
    Autoencoder,
    VectorQuantizer,
    autoencoder_loss,
    code_perplexity,
    fit_latent_gaussian,
    gaussian_kl,
    reparameterize,
    vae_loss,
    vqvae_loss,
)
from .diffusion import (
    GaussianDiffusion,
    UNet,
    cosine_beta_schedule,
    linear_beta_schedule,
    to_unit,
    from_unit,
)
from .gan import (
    GAN,
    AdversarialStep,
    DCGANDiscriminator,
    DCGANGenerator,
    dcgan,
    pairwise_diversity,
)
from .judge import (
    Judge,
    frechet_distance,
    judge_outputs,
    judge_report,
    train_judge,
)

__all__ = [
    "AdversarialStep",
    "Autoencoder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GAN",
    "GaussianDiffusion",
    "Judge",
    "UNet",
    "VAE",
    "VQVAE",
    "VectorQuantizer",
    "autoencoder_loss",
    "code_perplexity",
    "cosine_beta_schedule",
    "dcgan",
    "fit_latent_gaussian",
    "frechet_distance",
    "from_unit",
    "gaussian_kl",
    "judge_outputs",
    "judge_report",
    "linear_beta_schedule",
    "pairwise_diversity",
    "reparameterize",
    "to_unit",
    "train_judge",
    "vae_loss",
    "vqvae_loss",
]
