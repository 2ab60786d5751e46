"""Attention, Transformers and the Vision Transformer: the code of chapter 4 (``chapters/04*``).

* :mod:`.attention` -- scaled dot-product and multi-head attention, masks, KV cache, the Transformer block,
  position encodings (``04a_attention``)
* :mod:`.heads`     -- one head or several, measured (``04a_attention``)
* :mod:`.language`  -- a causal language model with a KV cache, BERT's masked LM (``04b_language``)
* :mod:`.vit`       -- the Vision Transformer, its hybrid, attention maps and rollout (``04c_vit``)
* :mod:`.swin`, :mod:`.mixer` -- Swin and MLP-Mixer (``04d_swin_mixer``)
* :mod:`.deformable` -- deformable attention (``04e_deformable``)

Mask conventions, everywhere in this package: ``attn_mask`` is boolean True = *may attend* (as in
``F.scaled_dot_product_attention``) or a float added to the scores; ``key_padding_mask`` is ``[B, S]``
boolean True = *padding, ignore* (as in ``nn.MultiheadAttention``).
"""
from .attention import (MLP, KVCache, MultiHeadAttention, TransformerBlock, ablate_heads, causal_mask,
                        init_transformer_weights, scaled_dot_product_attention, sinusoidal_position_encoding)
from .language import (CausalLM, MaskedLM, caption_corpus, mask_tokens, masked_token_accuracy, mlm_step,
                       next_token_step, parse_caption, sequence_labelling_accuracy, sequence_labelling_step,
                       time_generation, valid_caption_share)
from .deformable import DeformableAttention, DeformableBlock, DeformableViT, bilinear_sample, reference_points
from .heads import (ablated_accuracy, attention_by_offset, embedding_gradient_ratio, noisy_accuracy, noisy_output,
                    offset_gather_task, time_train_step)
from .mixer import MIXER_CONFIGS, MixerBlock, MixerConfig, MLPMixer, mixer_toy, mlp_mixer
from .swin import (SWIN_CONFIGS, PatchMerging, Swin, SwinBlock, SwinConfig, WindowAttention, relative_position_index,
                   shifted_window_mask, shifted_window_regions, swin_b, swin_s, swin_t, swin_toy, window_partition,
                   window_reverse)
from .vit import (VIT_CONFIGS, FeatureMapStem, PatchEmbedding, ViT, ViTConfig, attention_rollout,
                  attention_share_on_mask, cls_attention_grid, hybrid_vit_toy, resize_position_embedding, vit_b16,
                  vit_h14, vit_l16, vit_toy)

__all__ = ["MLP", "KVCache", "MultiHeadAttention", "TransformerBlock", "ablate_heads", "causal_mask",
           "init_transformer_weights", "scaled_dot_product_attention", "sinusoidal_position_encoding",
           "CausalLM", "MaskedLM", "caption_corpus", "mask_tokens", "masked_token_accuracy", "mlm_step",
           "next_token_step", "parse_caption", "valid_caption_share", "sequence_labelling_accuracy",
           "sequence_labelling_step",
           "time_generation",
           "VIT_CONFIGS", "FeatureMapStem", "PatchEmbedding", "ViT", "ViTConfig", "attention_rollout",
           "attention_share_on_mask", "cls_attention_grid", "hybrid_vit_toy", "resize_position_embedding", "vit_b16",
           "vit_h14", "vit_l16", "vit_toy",
           "ablated_accuracy", "attention_by_offset", "embedding_gradient_ratio", "noisy_accuracy", "noisy_output",
           "offset_gather_task", "time_train_step",
           "DeformableAttention", "DeformableBlock", "DeformableViT", "bilinear_sample", "reference_points",
           "MIXER_CONFIGS", "MixerBlock", "MixerConfig", "MLPMixer", "mixer_toy", "mlp_mixer",
           "SWIN_CONFIGS", "PatchMerging", "Swin", "SwinBlock", "SwinConfig", "WindowAttention",
           "relative_position_index", "shifted_window_mask", "shifted_window_regions", "swin_b", "swin_s", "swin_t",
           "swin_toy", "window_partition",
           "window_reverse"]
