"""The exercises of pages 7a (CLIP), 7b (ViLT), 7g (bridges) and 7i (DALL·E 2) keep their promises: each
reference solution passes its check, the untouched stub says "not yet", plausible mistakes fail with one
line, the quiz keys follow the numbers a page passes in, and each page carries its exercises."""

import json

import pytest
import torch
import torch.nn.functional as F

from vnotes import exercise_solutions as sol
from vnotes import exercises as ex


# ---------------------------------------------------------------- plausible mistakes, per exercise
def _logits(img, txt, scale):
    return scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T


def clip_one_directional(
    image_features, text_features, logit_scale, max_scale=100.0
):
    logits = _logits(
        image_features, text_features, logit_scale.exp().clamp(max=max_scale)
    )
    return F.cross_entropy(logits, torch.arange(logits.shape[0]))


def clip_temperature_divided(
    image_features, text_features, logit_scale, max_scale=100.0
):
    logits = _logits(
        image_features,
        text_features,
        1 / logit_scale.exp().clamp(max=max_scale),
    )
    labels = torch.arange(logits.shape[0])
    return 0.5 * (
        F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    )


def clip_scale_not_exponentiated(
    image_features, text_features, logit_scale, max_scale=100.0
):
    logits = _logits(
        image_features, text_features, logit_scale.clamp(max=max_scale)
    )
    labels = torch.arange(logits.shape[0])
    return 0.5 * (
        F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    )


def clip_labels_zero(
    image_features, text_features, logit_scale, max_scale=100.0
):
    logits = _logits(
        image_features, text_features, logit_scale.exp().clamp(max=max_scale)
    )
    labels = torch.zeros(logits.shape[0], dtype=torch.long)
    return 0.5 * (
        F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    )


def clip_not_normalised(
    image_features, text_features, logit_scale, max_scale=100.0
):
    logits = (
        logit_scale.exp().clamp(max=max_scale)
        * image_features
        @ text_features.T
    )
    labels = torch.arange(logits.shape[0])
    return 0.5 * (
        F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    )


def clip_summed_not_averaged(
    image_features, text_features, logit_scale, max_scale=100.0
):
    return 2 * sol.clip_loss(
        image_features, text_features, logit_scale, max_scale
    )


def clip_not_clipped(
    image_features, text_features, logit_scale, max_scale=100.0
):
    logits = _logits(image_features, text_features, logit_scale.exp())
    labels = torch.arange(logits.shape[0])
    return 0.5 * (
        F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    )


def clip_scale_as_float(
    image_features, text_features, logit_scale, max_scale=100.0
):
    # .item() cuts the graph: the value is right, but the temperature is never learned
    return sol.clip_loss(
        image_features,
        text_features,
        torch.tensor(logit_scale.item()),
        max_scale,
    )


def clip_rows_twice(
    image_features, text_features, logit_scale, max_scale=100.0
):
    logits = _logits(
        image_features, text_features, logit_scale.exp().clamp(max=max_scale)
    )
    labels = torch.arange(logits.shape[0])
    return 0.5 * (
        F.cross_entropy(logits, labels) + F.cross_entropy(logits, labels)
    )


def vilt_no_type(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    return sol.vilt_embed(
        word_vectors,
        patch_vectors,
        text_pos,
        image_cls,
        image_pos,
        torch.zeros_like(type_embed),
        ids,
        pad_id,
    )


def vilt_types_swapped(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    return sol.vilt_embed(
        word_vectors,
        patch_vectors,
        text_pos,
        image_cls,
        image_pos,
        type_embed.flip(0),
        ids,
        pad_id,
    )


def vilt_no_image_cls(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    B, L, _ = word_vectors.shape
    text = word_vectors + text_pos[:, :L] + type_embed[0]
    image = patch_vectors + image_pos[:, 1:] + type_embed[1]
    pad = torch.cat(
        [ids == pad_id, torch.zeros(B, image.shape[1], dtype=torch.bool)], 1
    )
    return torch.cat([text, image], 1), pad


def vilt_cls_without_position(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    x, pad = sol.vilt_embed(
        word_vectors,
        patch_vectors,
        text_pos,
        image_cls,
        image_pos,
        type_embed,
        ids,
        pad_id,
    )
    L = word_vectors.shape[1]
    x = x.clone()
    x[:, L] = x[:, L] - image_pos[:, 0]
    return x, pad


def vilt_image_first(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    x, pad = sol.vilt_embed(
        word_vectors,
        patch_vectors,
        text_pos,
        image_cls,
        image_pos,
        type_embed,
        ids,
        pad_id,
    )
    L = word_vectors.shape[1]
    return torch.cat([x[:, L:], x[:, :L]], 1), torch.cat(
        [pad[:, L:], pad[:, :L]], 1
    )


def vilt_pad_inverted(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    x, pad = sol.vilt_embed(
        word_vectors,
        patch_vectors,
        text_pos,
        image_cls,
        image_pos,
        type_embed,
        ids,
        pad_id,
    )
    return x, ~pad


def vilt_pad_text_only(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    x, _ = sol.vilt_embed(
        word_vectors,
        patch_vectors,
        text_pos,
        image_cls,
        image_pos,
        type_embed,
        ids,
        pad_id,
    )
    return x, ids == pad_id


def vilt_pad_id_zero(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    return sol.vilt_embed(
        word_vectors,
        patch_vectors,
        text_pos,
        image_cls,
        image_pos,
        type_embed,
        ids,
        0,
    )


def vilt_full_text_positions(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    # positions not cut to the caption's length: fails unless the caption fills max_text_len
    B, L, _ = word_vectors.shape
    text = word_vectors + text_pos + type_embed[0]
    image = (
        torch.cat([image_cls.expand(B, -1, -1), patch_vectors], 1)
        + image_pos
        + type_embed[1]
    )
    pad = torch.cat(
        [ids == pad_id, torch.zeros(B, image.shape[1], dtype=torch.bool)], 1
    )
    return torch.cat([text, image], 1), pad


def qformer_itg_text_sees_future(num_queries, text_len, mode):
    mask = sol.qformer_mask(num_queries, text_len, mode)
    if mode == "itg":
        mask[num_queries:, num_queries:] = True
    return mask


def qformer_itc_queries_see_text(num_queries, text_len, mode):
    mask = sol.qformer_mask(num_queries, text_len, mode)
    if mode == "itc":
        mask[:num_queries, num_queries:] = True
    return mask


def qformer_itg_queries_see_text(num_queries, text_len, mode):
    mask = sol.qformer_mask(num_queries, text_len, mode)
    if mode == "itg":
        mask[:num_queries, num_queries:] = True
    return mask


def qformer_itc_text_sees_queries(num_queries, text_len, mode):
    mask = sol.qformer_mask(num_queries, text_len, mode)
    if mode == "itc":
        mask[num_queries:, :num_queries] = True
    return mask


def qformer_itg_strictly_causal(num_queries, text_len, mode):
    mask = sol.qformer_mask(num_queries, text_len, mode)
    if mode == "itg":
        mask[num_queries:, num_queries:] = torch.ones(
            text_len, text_len, dtype=torch.bool
        ).tril(-1)
    return mask


def qformer_itg_text_blind_to_queries(num_queries, text_len, mode):
    mask = sol.qformer_mask(num_queries, text_len, mode)
    if mode == "itg":
        mask[num_queries:, :num_queries] = False
    return mask


def qformer_mask_inverted(num_queries, text_len, mode):
    return ~sol.qformer_mask(num_queries, text_len, mode)


def qformer_mask_as_floats(num_queries, text_len, mode):
    return sol.qformer_mask(num_queries, text_len, mode).float()


def qformer_itm_causal(num_queries, text_len, mode):
    if mode == "itm":
        return sol.qformer_mask(num_queries, text_len, "itg")
    return sol.qformer_mask(num_queries, text_len, mode)


def _eps(alpha_bar, t, x_t, x0):
    return (x_t - alpha_bar[t].sqrt()[:, None] * x0) / (
        1 - alpha_bar[t]
    ).sqrt()[:, None]


def unclip_clean_as_noise(prior, x_t, t, text_emb, guidance, alpha_bar):
    return (1 + guidance) * prior(x_t, t, text_emb) - guidance * prior(
        x_t, t, None
    )


def unclip_roots_swapped(prior, x_t, t, text_emb, guidance, alpha_bar):
    a, s = (1 - alpha_bar[t]).sqrt()[:, None], alpha_bar[t].sqrt()[:, None]
    c, u = (
        (x_t - a * prior(x_t, t, text_emb)) / s,
        (x_t - a * prior(x_t, t, None)) / s,
    )
    return (1 + guidance) * c - guidance * u


def unclip_no_square_roots(prior, x_t, t, text_emb, guidance, alpha_bar):
    a, s = alpha_bar[t][:, None], (1 - alpha_bar[t])[:, None]
    c, u = (
        (x_t - a * prior(x_t, t, text_emb)) / s,
        (x_t - a * prior(x_t, t, None)) / s,
    )
    return (1 + guidance) * c - guidance * u


def unclip_other_guidance_convention(
    prior, x_t, t, text_emb, guidance, alpha_bar
):
    c, u = (
        _eps(alpha_bar, t, x_t, prior(x_t, t, text_emb)),
        _eps(alpha_bar, t, x_t, prior(x_t, t, None)),
    )
    return u + guidance * (c - u)


def unclip_guidance_sign_flipped(prior, x_t, t, text_emb, guidance, alpha_bar):
    c, u = (
        _eps(alpha_bar, t, x_t, prior(x_t, t, text_emb)),
        _eps(alpha_bar, t, x_t, prior(x_t, t, None)),
    )
    return (1 + guidance) * u - guidance * c


def unclip_zero_caption_as_unconditional(
    prior, x_t, t, text_emb, guidance, alpha_bar
):
    c = _eps(alpha_bar, t, x_t, prior(x_t, t, text_emb))
    u = _eps(alpha_bar, t, x_t, prior(x_t, t, torch.zeros_like(text_emb)))
    return (1 + guidance) * c - guidance * u


def unclip_no_guidance(prior, x_t, t, text_emb, guidance, alpha_bar):
    return _eps(alpha_bar, t, x_t, prior(x_t, t, text_emb))


def unclip_step_off_by_one(prior, x_t, t, text_emb, guidance, alpha_bar):
    return sol.unclip_guided_noise(
        prior, x_t, t, text_emb, guidance, torch.roll(alpha_bar, 1)
    )


EXERCISES = {
    "clip_loss": [
        clip_one_directional,
        clip_temperature_divided,
        clip_scale_not_exponentiated,
        clip_labels_zero,
        clip_not_normalised,
        clip_summed_not_averaged,
        clip_not_clipped,
        clip_scale_as_float,
        clip_rows_twice,
    ],
    "vilt_embed": [
        vilt_no_type,
        vilt_types_swapped,
        vilt_no_image_cls,
        vilt_cls_without_position,
        vilt_image_first,
        vilt_pad_inverted,
        vilt_pad_text_only,
        vilt_pad_id_zero,
        vilt_full_text_positions,
    ],
    "qformer_mask": [
        qformer_itg_text_sees_future,
        qformer_itc_queries_see_text,
        qformer_itg_queries_see_text,
        qformer_itc_text_sees_queries,
        qformer_itg_strictly_causal,
        qformer_itg_text_blind_to_queries,
        qformer_mask_inverted,
        qformer_mask_as_floats,
        qformer_itm_causal,
    ],
    "unclip_guided_noise": [
        unclip_clean_as_noise,
        unclip_roots_swapped,
        unclip_no_square_roots,
        unclip_other_guidance_convention,
        unclip_guidance_sign_flipped,
        unclip_zero_caption_as_unconditional,
        unclip_no_guidance,
        unclip_step_off_by_one,
    ],
}


def test_messages_name_where_the_answer_differs():
    msg = ex.check_clip_loss(clip_one_directional).message
    assert msg.startswith("the loss (B=8") and "differs by up to" in msg
    msg = ex.check_clip_loss(clip_scale_as_float).message
    assert "no gradient" in msg
    msg = ex.check_qformer_mask(qformer_itg_text_sees_future).message
    assert "'itg'" in msg and "word 0 may attend to word 1" in msg
    msg = ex.check_qformer_mask(qformer_itc_queries_see_text).message
    assert "'itc'" in msg and "query 0 may attend to word 0" in msg
    msg = ex.check_vilt_embed(vilt_pad_text_only).message
    assert msg.startswith("pad has shape")
    msg = ex.check_unclip_guided_noise(
        unclip_other_guidance_convention
    ).message
    assert "w = 0" in msg


def test_checks_accept_the_books_own_functions():
    from vnotes.multimodal import objectives

    def itc(image_features, text_features, logit_scale, max_scale=100.0):
        return objectives.itc_loss(
            F.normalize(image_features, dim=-1),
            F.normalize(text_features, dim=-1),
            logit_scale.exp().clamp(max=max_scale),
        )

    assert ex.check_clip_loss(itc).passed
    assert ex.check_qformer_mask(objectives.qformer_mask).passed

    # guidance applied to the clean predictions first, then read as noise: the same thing (affine map)
    def guided_clean_first(prior, x_t, t, text_emb, guidance, alpha_bar):
        x0 = (1 + guidance) * prior(x_t, t, text_emb) - guidance * prior(
            x_t, t, None
        )
        return (x_t - alpha_bar[t].sqrt()[:, None] * x0) / (
            1 - alpha_bar[t]
        ).sqrt()[:, None]

    assert ex.check_unclip_guided_noise(guided_clean_first).passed


def test_checks_leave_the_random_state():
    state = torch.random.get_rng_state()
    ex.check_vilt_embed(sol.vilt_embed)
    ex.check_unclip_guided_noise(sol.unclip_guided_noise)
    assert torch.equal(state, torch.random.get_rng_state())


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def test_clip_quiz_keys_follow_the_numbers_passed_in():
    sets = ["bare name", "one prompt", "ensemble"]
    for batch, tau, chosen, went in (
        (64, 0.039, "one prompt", "it went down"),
        (32, 0.08, "ensemble", "it stayed"),
    ):
        quiz = ex.clip_quiz(
            batch_size=batch,
            temperature=tau,
            init_temperature=0.07,
            prompt_sets=sets,
            chosen_prompts=chosen,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"].startswith("one over each row")
        assert _correct(quiz[1])[0]["value"] == pytest.approx(
            round(torch.tensor(float(batch)).log().item(), 2)
        )
        assert _correct(quiz[2])[0]["answer"].startswith(went)
        assert _correct(quiz[3])[0]["answer"] == chosen
        json.dumps(quiz)


def test_vilt_quiz_keys_follow_the_numbers_passed_in():
    for L, N, by_word, masked, worst, best in (
        (
            10,
            16,
            {"size": 0.9, "colour": 0.95, "shape": 0.6},
            {"colour": 1.0, "shape": 0.4, "size": 0.9},
            "shape",
            "colour",
        ),
        (
            6,
            4,
            {"size": 0.5, "colour": 0.7, "shape": 0.8},
            {"colour": 0.2, "shape": 0.4, "size": 0.9},
            "size",
            "size",
        ),
    ):
        quiz = ex.vilt_quiz(
            sequence_length=L + 1 + N,
            text_length=L,
            num_patches=N,
            itm_by_changed_word=by_word,
            mlm_accuracy=masked,
        )
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[1])[0]["value"] == L + 1 + N
        assert _correct(quiz[2])[0]["answer"] == worst
        assert _correct(quiz[3])[0]["answer"] == best
        json.dumps(quiz)
    with pytest.raises(ValueError, match="sequence_length"):
        ex.vilt_quiz(
            sequence_length=20,
            text_length=10,
            num_patches=16,
            itm_by_changed_word=by_word,
            mlm_accuracy=masked,
        )


def test_bridges_quiz_keys_follow_the_numbers_passed_in():
    from vnotes.multimodal import objectives

    for Q, L, tokens, vqa, longest, best in (
        (8, 14, {"Q": 8, "P": 65}, {"Q": 0.77, "P": 0.54}, "P", "Q"),
        (4, 5, {"Q": 80, "P": 65}, {"Q": 0.3, "P": 0.5}, "Q", "P"),
    ):
        quiz = ex.bridges_quiz(
            num_queries=Q, text_len=L, prompt_tokens=tokens, vqa_accuracy=vqa
        )
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"].startswith("no")
        assert _correct(quiz[1])[0]["value"] == int(
            objectives.qformer_mask(Q, L, "itg").sum()
        )
        assert _correct(quiz[2])[0]["answer"] == longest
        assert _correct(quiz[3])[0]["answer"] == best
        json.dumps(quiz)


def test_dalle2_quiz_keys_follow_the_numbers_passed_in():
    for w, true_acc, cap_acc, weaker in (
        (15.0, 0.46, 0.40, "drawings"),
        (1.0, 0.3, 0.5, "redraws"),
    ):
        quiz = ex.dalle2_quiz(
            decoder_guidance=w,
            decoder_grid=(0.0, 1.0, 5.0, 15.0),
            true_embedding_accuracy=true_acc,
            caption_accuracy=cap_acc,
        )
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert (
            _correct(quiz[0])[0]["answer"] == "the clean CLIP image embedding"
        )
        assert (
            _correct(quiz[1])[0]["answer"]
            == "the conditional prediction alone"
        )
        assert _correct(quiz[2])[0]["answer"] == f"{w:g}"
        assert _correct(quiz[3])[0]["answer"].startswith(weaker)
        json.dumps(quiz)


# ---------------------------------------------------------------- the pages
EXERCISE_PAGES = {
    "07a_clip": (("clip_loss",), 2, "clip_quiz"),
    "07b_vilt": (("vilt_embed",), 2, "vilt_quiz"),
    "07g_bridges": (("qformer_mask",), 2, "bridges_quiz"),
    "07i_dalle2": (("unclip_guided_noise",), 2, "dalle2_quiz"),
}

# the question the rendered-page test clicks, with its answer (fixed by the method, not by a run)
QUIZ_CLICKS = {
    "07a_clip": (
        "averages two cross-entropies",
        "one over each row (image to caption) and one over each column (caption to image)",
    ),
    "07b_vilt": (
        "know whether a token is a word or a patch",
        "a learned modality-type embedding is added to every token",
    ),
    "07g_bridges": (
        "may a query attend to a caption word",
        "no: queries see only queries, and words only words",
    ),
    "07i_dalle2": (
        "What does the prior's network predict",
        "the clean CLIP image embedding",
    ),
}


def test_chapter_7_pages_7a_7b_7g_7i_have_four_implement_exercises():
    assert sum(len(stubs) for stubs, _, _ in EXERCISE_PAGES.values()) >= 4


def test_chapter_7_has_at_least_three_implement_exercises():
    assert sum(len(stubs) for stubs, _, _ in EXERCISE_PAGES.values()) >= 3
