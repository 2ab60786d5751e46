"""Chapter 7's exercises of pages 7c, 7d, 7e, 7f, 7h and 7j keep their promises (vnotes/exercises/ch7_more.py):
the reference solution passes its check, the untouched stub fails with a "not yet" line, plausible mistakes fail
with a one-line message, quiz answer keys follow the numbers a page passes in, and the pages hold their
exercises."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from vnotes import exercise_solutions as sol
from vnotes import exercises as ex


# ---------------------------------------------------------------- 7c: hard negatives
def negatives_positive_not_excluded(similarity, positive):
    return torch.multinomial(torch.softmax(similarity.double(), 1), 1).squeeze(
        1
    )


def negatives_argmax(similarity, positive):
    # always the hardest negative, never a draw
    return similarity.masked_fill(positive, float("-inf")).argmax(1)


def negatives_argmin(similarity, positive):
    return similarity.masked_fill(positive, float("inf")).argmin(1)


def negatives_uniform(similarity, positive):
    return torch.multinomial((~positive).double(), 1).squeeze(1)


def negatives_only_first_positive_excluded(similarity, positive):
    # excludes one positive per row (its own caption, as if there were no identical ones)
    first = positive & (positive.cumsum(1) == 1)
    return sol.albef_hard_negatives(similarity, first)


def negatives_exp_without_shift(similarity, positive):
    w = similarity.exp().masked_fill(positive, 0.0)
    return torch.multinomial(w, 1).squeeze(1)


def negatives_wrong_axis(similarity, positive):
    p = torch.softmax(similarity.double(), 0).masked_fill(positive, 0.0)
    return torch.multinomial(p, 1).squeeze(1)


# ---------------------------------------------------------------- 7d: distillation targets
def distill_alpha_on_the_wrong_term(momentum_logits, positive, alpha):
    return sol.albef_distill_targets(momentum_logits, positive, 1 - alpha)


def distill_logits_without_normalising(momentum_logits, positive, alpha):
    p = positive.to(momentum_logits.dtype)
    return alpha * momentum_logits + (1 - alpha) * p / p.sum(1, keepdim=True)


def distill_over_the_wrong_axis(momentum_logits, positive, alpha):
    p = positive.to(momentum_logits.dtype)
    return alpha * torch.softmax(momentum_logits, 0) + (1 - alpha) * p / p.sum(
        1, keepdim=True
    )


def distill_identity_labels(momentum_logits, positive, alpha):
    eye = torch.zeros_like(momentum_logits)
    eye.fill_diagonal_(1.0)
    return alpha * torch.softmax(momentum_logits, 1) + (1 - alpha) * eye


def distill_positives_not_normalised(momentum_logits, positive, alpha):
    return alpha * torch.softmax(momentum_logits, 1) + (
        1 - alpha
    ) * positive.to(momentum_logits.dtype)


def distill_exp_overflows(momentum_logits, positive, alpha):
    e = momentum_logits.exp()
    p = positive.to(momentum_logits.dtype)
    return alpha * e / e.sum(1, keepdim=True) + (1 - alpha) * p / p.sum(
        1, keepdim=True
    )


# ---------------------------------------------------------------- 7e: captioning loss
def lm_labels_not_shifted(logits, ids, pad_id, label_smoothing=0.0):
    return F.cross_entropy(
        logits.flatten(0, 1),
        ids.flatten(),
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
    )


def lm_shifted_the_wrong_way(logits, ids, pad_id, label_smoothing=0.0):
    return F.cross_entropy(
        logits[:, 1:].flatten(0, 1),
        ids[:, :-1].flatten(),
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
    )


def lm_padding_counted(logits, ids, pad_id, label_smoothing=0.0):
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1),
        ids[:, 1:].flatten(),
        label_smoothing=label_smoothing,
    )


def lm_padding_in_the_denominator(logits, ids, pad_id, label_smoothing=0.0):
    loss = F.cross_entropy(
        logits[:, :-1].flatten(0, 1),
        ids[:, 1:].flatten(),
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return loss / ids[:, 1:].numel()


def lm_mean_of_caption_means(logits, ids, pad_id, label_smoothing=0.0):
    loss = F.cross_entropy(
        logits[:, :-1].transpose(1, 2),
        ids[:, 1:],
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
        reduction="none",
    )
    keep = ids[:, 1:] != pad_id
    return (loss.sum(1) / keep.sum(1)).mean()


def lm_no_label_smoothing(logits, ids, pad_id, label_smoothing=0.0):
    return sol.blip_lm_loss(logits, ids, pad_id, 0.0)


def lm_pad_id_zero(logits, ids, pad_id, label_smoothing=0.0):
    return sol.blip_lm_loss(logits, ids, 0, label_smoothing)


# ---------------------------------------------------------------- 7f: the filter
def filter_wrong_column(itm_web, itm_synthetic, threshold=0.5):
    return tuple(
        torch.softmax(x, 1)[:, 0] > threshold for x in (itm_web, itm_synthetic)
    )


def filter_raw_logit(itm_web, itm_synthetic, threshold=0.5):
    return tuple(x[:, 1] > threshold for x in (itm_web, itm_synthetic))


def filter_sigmoid_of_match_logit(itm_web, itm_synthetic, threshold=0.5):
    return tuple(
        torch.sigmoid(x[:, 1]) > threshold for x in (itm_web, itm_synthetic)
    )


def filter_at_least_threshold(itm_web, itm_synthetic, threshold=0.5):
    return tuple(
        torch.softmax(x, 1)[:, 1] >= threshold
        for x in (itm_web, itm_synthetic)
    )


def filter_fixed_threshold(itm_web, itm_synthetic, threshold=0.5):
    return sol.capfilt_filter(itm_web, itm_synthetic, 0.5)


def filter_synthetic_only_where_web_rejected(
    itm_web, itm_synthetic, threshold=0.5
):
    web, syn = sol.capfilt_filter(itm_web, itm_synthetic, threshold)
    return web, syn & ~web


# ---------------------------------------------------------------- 7h: multiway routing
def multiway_text_to_vision_expert(
    block, x, num_image_tokens, mode, padding=None
):
    if mode == "fusion" and "vl" not in block.experts:
        x = x + block.attn(block.norm1(x), key_padding_mask=padding)
        return x + block.experts["vision"](block.norm2["vision"](x))
    return sol.multiway_forward(block, x, num_image_tokens, mode, padding)


def multiway_routes_swapped(block, x, num_image_tokens, mode, padding=None):
    if mode == "fusion" and "vl" not in block.experts:
        x = x + block.attn(block.norm1(x), key_padding_mask=padding)
        n = num_image_tokens
        return torch.cat(
            [
                x[:, :n]
                + block.experts["language"](block.norm2["language"](x[:, :n])),
                x[:, n:]
                + block.experts["vision"](block.norm2["vision"](x[:, n:])),
            ],
            1,
        )
    return sol.multiway_forward(block, x, num_image_tokens, mode, padding)


def multiway_vl_expert_ignored(block, x, num_image_tokens, mode, padding=None):
    x = x + block.attn(block.norm1(x), key_padding_mask=padding)
    if mode in ("vision", "language"):
        return x + block.experts[mode](block.norm2[mode](x))
    n = num_image_tokens
    return torch.cat(
        [
            x[:, :n]
            + block.experts["vision"](block.norm2["vision"](x[:, :n])),
            x[:, n:]
            + block.experts["language"](block.norm2["language"](x[:, n:])),
        ],
        1,
    )


def multiway_one_norm_for_all(block, x, num_image_tokens, mode, padding=None):
    class Shared:
        pass

    shared = Shared()
    shared.attn, shared.norm1, shared.experts = (
        block.attn,
        block.norm1,
        block.experts,
    )
    shared.norm2 = {e: block.norm2["language"] for e in block.norm2}
    return sol.multiway_forward(shared, x, num_image_tokens, mode, padding)


def multiway_no_expert_residual(
    block, x, num_image_tokens, mode, padding=None
):
    y = sol.multiway_forward(block, x, num_image_tokens, mode, padding)
    h = x + block.attn(block.norm1(x), key_padding_mask=padding)
    return y - h


def multiway_padding_ignored(block, x, num_image_tokens, mode, padding=None):
    return sol.multiway_forward(block, x, num_image_tokens, mode, None)


# ---------------------------------------------------------------- 7j: co-attention
def _attend(q, kv, pad, scale=True):
    s = q @ kv.transpose(1, 2)
    if scale:
        s = s / math.sqrt(q.shape[-1])
    return (
        torch.softmax(s.masked_fill(pad[:, None, :], float("-inf")), -1) @ kv
    )


def co_attention_pads_swapped(text, regions, text_pad, region_pad):
    # each direction masks with the padding of its own queries (shapes fit only when L == R)
    return _attend(text, regions, text_pad), _attend(regions, text, region_pad)


def co_attention_self_attention(text, regions, text_pad, region_pad):
    return _attend(text, text, text_pad), _attend(regions, regions, region_pad)


def co_attention_unscaled(text, regions, text_pad, region_pad):
    return _attend(text, regions, region_pad, False), _attend(
        regions, text, text_pad, False
    )


def co_attention_outputs_swapped(text, regions, text_pad, region_pad):
    t, r = sol.co_attention(text, regions, text_pad, region_pad)
    return r, t


def co_attention_padding_ignored(text, regions, text_pad, region_pad):
    return sol.co_attention(
        text, regions, torch.zeros_like(text_pad), torch.zeros_like(region_pad)
    )


def co_attention_one_direction(text, regions, text_pad, region_pad):
    t, _ = sol.co_attention(text, regions, text_pad, region_pad)
    return t, regions


EXERCISES = {
    "albef_hard_negatives": [
        negatives_positive_not_excluded,
        negatives_argmax,
        negatives_argmin,
        negatives_uniform,
        negatives_only_first_positive_excluded,
        negatives_exp_without_shift,
        negatives_wrong_axis,
    ],
    "albef_distill_targets": [
        distill_alpha_on_the_wrong_term,
        distill_logits_without_normalising,
        distill_over_the_wrong_axis,
        distill_identity_labels,
        distill_positives_not_normalised,
        distill_exp_overflows,
    ],
    "blip_lm_loss": [
        lm_labels_not_shifted,
        lm_shifted_the_wrong_way,
        lm_padding_counted,
        lm_padding_in_the_denominator,
        lm_mean_of_caption_means,
        lm_no_label_smoothing,
        lm_pad_id_zero,
    ],
    "capfilt_filter": [
        filter_wrong_column,
        filter_raw_logit,
        filter_sigmoid_of_match_logit,
        filter_at_least_threshold,
        filter_fixed_threshold,
        filter_synthetic_only_where_web_rejected,
    ],
    "multiway_forward": [
        multiway_text_to_vision_expert,
        multiway_routes_swapped,
        multiway_vl_expert_ignored,
        multiway_one_norm_for_all,
        multiway_no_expert_residual,
        multiway_padding_ignored,
    ],
    "co_attention": [
        co_attention_pads_swapped,
        co_attention_self_attention,
        co_attention_unscaled,
        co_attention_outputs_swapped,
        co_attention_padding_ignored,
        co_attention_one_direction,
    ],
}


def test_messages_name_where_the_answer_differs():
    msg = ex.check_albef_hard_negatives(
        negatives_positive_not_excluded
    ).message
    assert "a positive can never be the negative" in msg
    msg = ex.check_albef_hard_negatives(
        negatives_only_first_positive_excluded
    ).message
    assert "identical captions" in msg and "can never be" in msg
    msg = ex.check_albef_hard_negatives(negatives_argmax).message
    assert "draws" in msg and "its probability is" in msg
    msg = ex.check_multiway_forward(multiway_routes_swapped).message
    assert "image token" in msg and "bottom block" in msg
    msg = ex.check_capfilt_filter(filter_at_least_threshold).message
    assert "exactly 0.5" in msg


def test_checks_accept_the_books_own_functions():
    from vnotes.multimodal import objectives

    assert ex.check_albef_hard_negatives(
        lambda s, p: objectives.sample_hard_negatives(s, p)[0]
    ).passed
    assert ex.check_multiway_forward(
        lambda block, x, n, mode, padding=None: block(x, n, mode, padding)
    ).passed


def test_checks_leave_the_random_state():
    state = torch.random.get_rng_state()
    ex.check_albef_hard_negatives(sol.albef_hard_negatives)
    ex.check_multiway_forward(sol.multiway_forward)
    assert torch.equal(state, torch.random.get_rng_state())


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def _keys(quiz):
    assert len(quiz) >= 3
    out = []
    for q in quiz:
        right = _correct(q)
        assert len(right) == 1, q["question"]
        out.append(right[0].get("answer", right[0].get("value")))
    json.dumps(quiz)
    return out


def test_albef_quiz_keys_follow_the_numbers_passed_in():
    a = _keys(
        ex.albef_quiz(
            itm={"random": 0.9, "hard": 0.6},
            rerank={"itc_r1": 0.5, "itm_rerank_r1": 0.6},
            batch_size=32,
        )
    )
    b = _keys(
        ex.albef_quiz(
            itm={"random": 0.5, "hard": 0.7},
            rerank={"itc_r1": 0.5, "itm_rerank_r1": 0.4},
            batch_size=64,
        )
    )
    assert a[0] == b[0] and a[0].startswith("they are right captions")
    assert (a[1], b[1]) == (96, 192)
    assert (a[2], b[2]) == (
        "the caption with one word changed",
        "a random wrong caption",
    )
    assert (a[3], b[3]) == ("yes: R@1 went up", "no: R@1 did not go up")


def test_albef_noise_quiz_keys_follow_the_numbers_passed_in():
    m = "ITC image-to-text R@1"
    a = _keys(
        ex.albef_noise_quiz(
            alpha=0.4,
            results={"with": {m: 0.6}, "without": {m: 0.5}},
            own_true=0.7,
            own_wrong=0.2,
        )
    )
    b = _keys(
        ex.albef_noise_quiz(
            alpha=0.25,
            results={"with": {m: 0.4}, "without": {m: 0.5}},
            own_true=0.1,
            own_wrong=0.2,
        )
    )
    assert (a[0], b[0]) == (0.6, 0.75)
    assert (a[2], b[2]) == ("with", "without")
    assert (a[3], b[3]) == ("the true captions", "the wrong captions")


def test_blip_coca_quiz_keys_follow_the_numbers_passed_in():
    acc1 = {
        "BLIP": {"seen pairs": 0.5, "held-out pairs": 0.2},
        "CoCa": {"seen pairs": 0.6, "held-out pairs": 0.3},
    }
    acc2 = {
        "BLIP": {"seen pairs": 0.5, "held-out pairs": 0.2},
        "CoCa": {"seen pairs": 0.1, "held-out pairs": 0.3},
    }
    a = _keys(ex.blip_coca_quiz(ms_blip=30.0, ms_coca=10.0, accuracy=acc1))
    b = _keys(ex.blip_coca_quiz(ms_blip=10.0, ms_coca=30.0, accuracy=acc2))
    assert a[0] == "the next token of the caption" and a[1] == 3
    assert (a[2], b[2]) == ("CoCa", "BLIP")
    assert (a[3], b[3]) == (
        "lower on held-out pairs",
        "not lower on held-out pairs",
    )


def test_capfilt_quiz_keys_follow_the_numbers_passed_in():
    dec1 = {"nucleus p = 0.9": (0.9, 0.3), "greedy": (0.0, 0.8)}
    dec2 = {"nucleus p = 0.9": (0.9, 0.9), "greedy": (0.0, 0.8)}
    a = _keys(
        ex.capfilt_quiz(
            kept_right=0.6,
            kept_wrong=0.1,
            decoding=dec1,
            chosen="greedy",
            itm_before=0.5,
            itm_after=0.7,
        )
    )
    b = _keys(
        ex.capfilt_quiz(
            kept_right=0.1,
            kept_wrong=0.3,
            decoding=dec2,
            chosen="nucleus p = 0.9",
            itm_before=0.6,
            itm_after=0.5,
        )
    )
    assert a[0] == "its ITM match probability is above 0.5"
    assert (a[1], b[1]) == ("greedy", "nucleus p = 0.9")
    assert (a[2], b[2]) == ("right web captions", "wrong web captions")
    assert a[3] == "the model pre-trained on CapFilt data"
    assert b[3] == "the model pre-trained on web + human pairs"
    with pytest.raises(ValueError, match="chosen"):
        ex.capfilt_quiz(
            kept_right=0.6,
            kept_wrong=0.1,
            decoding=dec1,
            chosen="nucleus p = 0.9",
            itm_before=0.5,
            itm_after=0.7,
        )


def test_multiway_quiz_keys_follow_the_numbers_passed_in():
    a = _keys(
        ex.multiway_quiz(
            shared=100,
            experts={"vision": 200, "language": 200},
            dual_r1=0.8,
            fusion_r1=0.3,
            time_ratio=20.0,
        )
    )
    b = _keys(
        ex.multiway_quiz(
            shared=900,
            experts={"vision": 200, "language": 200},
            dual_r1=0.3,
            fusion_r1=0.8,
            time_ratio=900.0,
        )
    )
    assert a[0] == "L-FFN, the language expert"
    assert (a[1], b[1]) == ("the experts", "the shared attention")
    assert (a[2], b[2]) == (
        "the dual encoder (ITC)",
        "the fusion encoder (ITM)",
    )
    assert (a[3], b[3]) == ("about 10×", "about 1,000×")


def test_region_models_quiz_keys_follow_the_numbers_passed_in():
    itm1 = {
        "A": {"random": 0.9, "hard": 0.7},
        "B": {"random": 0.9, "hard": 0.6},
        "ViLT": {"random": 0.9, "hard": 0.9},
    }
    itm2 = {
        "A": {"random": 0.9, "hard": 0.5},
        "B": {"random": 0.9, "hard": 0.6},
        "ViLT": {"random": 0.9, "hard": 0.9},
    }
    a = _keys(
        ex.region_models_quiz(
            itm=itm1, n_params={"A": 10, "B": 20, "ViLT": 5}, tag_accuracy=0.96
        )
    )
    b = _keys(
        ex.region_models_quiz(
            itm=itm2, n_params={"A": 30, "B": 20, "ViLT": 5}, tag_accuracy=0.5
        )
    )
    assert a[0] == "the regions' keys and values"
    assert a[1] == "its words or its regions, never both"
    assert (a[2], b[2]) == ("A", "B")
    assert (a[3], b[3]) == ("B", "A")
    assert (a[4], b[4]) == (96, 50)


# ---------------------------------------------------------------- the pages

# Each page with exercises: its stubs (each checked and with a folded solution), how many exercises its
# markdown numbers, and the one call that builds its quiz.
EXERCISE_PAGES = {
    "07c_albef": (("albef_hard_negatives",), 2, "albef_quiz"),
    "07d_albef_noise": (("albef_distill_targets",), 2, "albef_noise_quiz"),
    "07e_blip_coca": (("blip_lm_loss",), 2, "blip_coca_quiz"),
    "07f_capfilt": (("capfilt_filter",), 2, "capfilt_quiz"),
    "07h_multiway": (("multiway_forward",), 2, "multiway_quiz"),
    "07j_region_models": (("co_attention",), 2, "region_models_quiz"),
}

# The quiz question the rendered-page test clicks, with its answer (fixed by the method, not by a run).
QUIZ_CLICKS = {
    "07c_albef": (
        "left out of the hard-negative draw",
        "they are right captions: as negatives they would teach ITM that a true caption does not match",
    ),
    "07d_albef_noise": (
        "What does the run with",
        "the momentum model's predictions in the targets (the queue is still filled)",
    ),
    "07e_blip_coca": (
        "In BLIP's captioning loss, the logits",
        "the next token of the caption",
    ),
    "07f_capfilt": (
        "The filter keeps a web caption when",
        "its ITM match probability is above 0.5",
    ),
    "07h_multiway": (
        "which expert transforms the text tokens",
        "L-FFN, the language expert",
    ),
    "07j_region_models": (
        "the words' queries attend to",
        "the regions' keys and values",
    ),
}
