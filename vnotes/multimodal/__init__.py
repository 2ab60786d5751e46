"""Multimodal vision--language models (chapter 7, 多模态): from CLIP to BLIP-2, in the toy world.

One file per family:

* :mod:`.data`        -- image--caption pairs with held-out colour--shape pairs, noisy captions, questions
* :mod:`.objectives`  -- ITC, ITM with hard negatives, MLM, momentum distillation, Q-Former masks
* :mod:`.towers`      -- text towers, CLIP's ResNet image tower with attention pooling
* :mod:`.clip`        -- CLIP (Radford et al., 2021): dual encoder, zero-shot with prompts (7a)
* :mod:`.pretrained`  -- the chapter's CLIP, trained in 7a and reused from the cache by 7c-7i
* :mod:`.vilt`        -- ViLT (Kim et al., 2021): single-stream fusion, word--patch attention (7b)
* :mod:`.momentum`    -- the momentum (EMA) model and feature queue ALBEF and BLIP share
* :mod:`.albef`       -- ALBEF (Li et al., 2021): align before fuse, momentum distillation (7c, 7d)
* :mod:`.blip`        -- BLIP (Li et al., 2022): MED, captioning, CapFilt (7e, 7f)
* :mod:`.coca`        -- CoCa (Yu et al., 2022): contrastive captioner (7e)
* :mod:`.bridges`     -- BLIP-2's Q-Former (Li et al., 2023) and LLaVA's projection (Liu et al., 2023) (7g)
* :mod:`.multiway`    -- VLMo / BEiT-3 Multiway Transformer (Bao et al., 2022; Wang et al., 2023) (7h)
* :mod:`.dalle2`      -- DALL·E 2 / unCLIP in miniature (Ramesh et al., 2022) (7i)
* :mod:`.metrics`, :mod:`.plots`, :mod:`.recipes` -- scoring, figures and the training recipe
"""

from .clip import (
    CLIP,
    CLIP_CONFIGS,
    build_clip,
    clip_step,
    zero_shot_predict,
    zero_shot_weights,
)
from .data import (
    HELDOUT_COMBOS,
    ImageTextPairs,
    QuestionAnswers,
    caption_vocabulary,
    is_heldout,
    make_pairs,
    make_qa,
    matching_test,
)
from .metrics import retrieval_report
from .towers import TextTransformer

__all__ = [
    "CLIP",
    "CLIP_CONFIGS",
    "HELDOUT_COMBOS",
    "ImageTextPairs",
    "QuestionAnswers",
    "TextTransformer",
    "build_clip",
    "caption_vocabulary",
    "clip_step",
    "is_heldout",
    "make_pairs",
    "make_qa",
    "matching_test",
    "retrieval_report",
    "zero_shot_predict",
    "zero_shot_weights",
]
