"""Self-supervised and contrastive learning (chapter 5, 对比学习 / 自监督): features learned without labels.

* :mod:`vnotes.ssl.losses` -- InfoNCE / NT-Xent, hard negatives, BYOL, Sinkhorn + SwAV, DINO
* :mod:`vnotes.ssl.augment` -- per-image random views (crop + colour) for a whole batch, multi-crop
* :mod:`vnotes.ssl.methods` -- SimCLR, MoCo, BYOL, SwAV, DINO as modules with a ``training_step``
* :mod:`vnotes.ssl.mae` -- the masked autoencoder (He et al., 2021) on the chapter-4 ViT
* :mod:`vnotes.ssl.evaluation` -- linear probe, k-NN, effective rank, attention maps: the same for every method
* :mod:`vnotes.ssl.experiments` -- the chapter's data, per-scale settings, runs and ranking

Encoders come from earlier chapters: :func:`vnotes.cnn.resnet_mini` and :class:`vnotes.transformer.ViT`.
"""

from .augment import MultiCrop, ViewAugment, torchvision_pipeline
from .evaluation import (
    READOUTS,
    attention_on_object,
    cls_attention,
    effective_rank,
    evaluate_features,
    extract_features,
    knn_accuracy,
    knn_classify,
    linear_probe,
    normalized_std,
    patch_average,
)
from .losses import (
    byol_loss,
    dino_loss,
    hard_negative_nt_xent,
    info_nce,
    negative_weights,
    nt_xent,
    nt_xent_reference,
    sinkhorn_knopp,
    swav_loss,
)
from .methods import (
    BYOL,
    DINO,
    PAPER_SETTINGS,
    DINOHead,
    MLPHead,
    MoCo,
    SimCLR,
    SwAV,
    encode,
    ssl_step,
)

__all__ = [
    "READOUTS",
    "BYOL",
    "DINO",
    "DINOHead",
    "MLPHead",
    "MoCo",
    "MultiCrop",
    "PAPER_SETTINGS",
    "SimCLR",
    "SwAV",
    "ViewAugment",
    "attention_on_object",
    "byol_loss",
    "cls_attention",
    "dino_loss",
    "effective_rank",
    "encode",
    "evaluate_features",
    "extract_features",
    "hard_negative_nt_xent",
    "info_nce",
    "knn_accuracy",
    "knn_classify",
    "linear_probe",
    "negative_weights",
    "normalized_std",
    "nt_xent",
    "nt_xent_reference",
    "patch_average",
    "sinkhorn_knopp",
    "ssl_step",
    "swav_loss",
    "torchvision_pipeline",
]
