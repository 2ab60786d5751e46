"""Multimodal vision--language models (chapter 7): CLIP, ViLT, ALBEF, BLIP, CoCa, BLIP-2, LLaVA, VLMo, DALL·E 2.

One file per family:

* :mod:`.data`       -- image--caption pairs with held-out combinations, noisy captions, questions
* :mod:`.objectives` -- ITC, ITM with hard negatives, MLM, momentum distillation, attention masks
* :mod:`.clip`       -- CLIP (Radford et al., 2021): dual encoder, retrieval, zero-shot
"""
from .clip import CLIP, CLIP_CONFIGS, TextTransformer, build_clip, clip_step, zero_shot_weights
from .metrics import retrieval_report
from .data import HELDOUT_COMBOS, ImageTextPairs, QuestionAnswers, caption_vocabulary, make_pairs, make_qa
