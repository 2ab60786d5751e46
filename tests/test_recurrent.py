"""vnotes.recurrent: cells equal to PyTorch's, BPTT helpers, the task, the encoder-decoders."""

import itertools

import pytest
import torch
from torch import nn

import vnotes.recurrent as R

LAYOUTS = list(itertools.product((1, 2), (False, True), (False, True)))


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first", LAYOUTS)
def test_equal_to_torch_with_copied_weights(
    kind, num_layers, bidirectional, batch_first
):
    d = R.max_abs_diff_vs_torch(
        kind,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
    )
    assert d["output"] <= 1e-5 and d["state"] <= 1e-5, d
    assert d["grad"] <= 1e-5, d


@pytest.mark.parametrize("bias", [True, False])
def test_relu_rnn_and_no_bias_equal_to_torch(bias):
    d = R.max_abs_diff_vs_torch(
        "RNN", nonlinearity="relu", bias=bias, num_layers=2, bidirectional=True
    )
    assert max(d.values()) <= 1e-5, d
    d = R.max_abs_diff_vs_torch("LSTM", bias=bias, num_layers=2)
    assert max(d.values()) <= 1e-5, d


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_parameter_names_shapes_and_order_match_torch(kind):
    ref = getattr(nn, kind)(5, 7, num_layers=3, bidirectional=True)
    ours = getattr(R, kind)(5, 7, num_layers=3, bidirectional=True)
    assert [(n, p.shape) for n, p in ref.named_parameters()] == [
        (n, p.shape) for n, p in ours.named_parameters()
    ]
    # and back: our weights load into PyTorch's layer
    ref.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_and_default_state_match_torch(kind):
    torch.manual_seed(0)
    ref = getattr(nn, kind)(4, 6, num_layers=2, bidirectional=True)
    ours = getattr(R, kind)(4, 6, num_layers=2, bidirectional=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(9, 4)  # [T, features], no batch
    (o1, s1), (o2, s2) = ref(x), ours(x)
    assert o1.shape == o2.shape == (9, 12)
    torch.testing.assert_close(o2, o1, atol=1e-5, rtol=0)
    for a, b in zip(
        s1 if isinstance(s1, tuple) else (s1,),
        s2 if isinstance(s2, tuple) else (s2,),
    ):
        assert a.shape == b.shape == (4, 6)
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_no_fused_or_builtin_cells_are_used(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a built-in recurrent kernel was called")

    for name in (
        "lstm",
        "gru",
        "rnn_tanh",
        "rnn_relu",
        "lstm_cell",
        "gru_cell",
    ):
        monkeypatch.setattr(torch, name, forbidden, raising=False)
    for layer in (R.RNN(3, 4), R.LSTM(3, 4), R.GRU(3, 4)):
        layer(torch.randn(5, 2, 3))[0].sum().backward()
    assert not any(
        isinstance(m, (nn.RNNBase, nn.RNNCellBase))
        for m in R.Seq2Seq(attention=True).modules()
    )


def test_dropout_between_layers_only_in_training():
    layer = R.GRU(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(6, 2, 3)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    layer.train()
    torch.manual_seed(0)
    a = layer(x)[0]
    torch.manual_seed(1)
    assert not torch.equal(a, layer(x)[0])


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="nonlinearity='sigmoid'"):
        R.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size=0"):
        R.GRU(3, 0)
    with pytest.raises(ValueError, match="input_size=3"):
        R.LSTM(3, 4)(torch.randn(5, 2, 7))


def test_gradient_by_lag_vanishes_for_rnn_and_explodes_above_identity():
    torch.manual_seed(0)
    x = torch.randn(30, 8, 4)
    r = R.input_gradient_by_lag(R.RNN(4, 32), x)
    assert r.shape == (30,) and r[0] == 1.0
    assert r[-1] < 1e-4
    relu = R.scaled_identity_(R.RNN(4, 32, nonlinearity="relu"), 1.2)
    assert R.input_gradient_by_lag(relu, x)[-1] > 10
    open_lstm = R.lstm_forget_bias_(R.LSTM(4, 32), 3.0)
    assert (
        R.input_gradient_by_lag(open_lstm, x)[-1]
        > 100 * R.input_gradient_by_lag(R.LSTM(4, 32), x)[-1]
    )


def test_adding_problem_targets():
    x, y = R.adding_problem(50, 10, seed=0)
    assert x.shape == (50, 10, 2) and y.shape == (50,)
    assert torch.equal(x[..., 1].sum(1), torch.full((50,), 2.0))
    torch.testing.assert_close(y, (x[..., 0] * x[..., 1]).sum(1))
    assert (x[:, :5, 1].sum(1) == 1).all()  # one marker in each half


def test_negative_colours_pair_up():
    pairs = {c: R.negative_colour(c) for c in R.COLOURS}
    assert pairs["red"] == "cyan" and pairs["blue"] == "yellow"
    assert all(pairs[pairs[c]] == c for c in pairs)


@pytest.mark.parametrize("transform", R.TRANSFORMS)
def test_task_lengths_and_targets(transform):
    p = R.object_rows_task(72, transform=transform, seed=3, split="val")
    assert sorted(p.lengths.tolist()) == sorted(list(range(5, 41)) * 2)
    for i in range(len(p)):
        L = int(p.lengths[i])
        assert (p.src[i, L:] == R.PAD).all() and (p.tgt[i, L:] == R.PAD).all()
        src = [R.VOCAB[k] for k in p.src[i, :L]]
        tgt = [R.VOCAB[k] for k in p.tgt[i, :L]]
        if transform == "reverse":
            assert tgt == src[::-1]
        elif transform == "copy":
            assert tgt == src
        else:
            for s, t in zip(src, tgt):
                colour, shape = s.split()
                assert t == f"{R.negative_colour(colour)} {shape}"
    other = R.object_rows_task(72, transform=transform, seed=3, split="test")
    assert not torch.equal(p.src, other.src)


def test_length_batches_cover_every_row_once_with_one_length_each():
    p = R.object_rows_task(36 * 5, seed=0)
    loader = R.LengthBatches(p, batch_size=2, shuffle=True)
    seen = 0
    for src, tgt in loader:
        assert (src != R.PAD).all() and src.shape == tgt.shape
        seen += src.shape[0]
    assert seen == len(p) and len(loader) == 36 * 3


def test_additive_attention_weights_and_context():
    torch.manual_seed(0)
    attn = R.AdditiveAttention(6, 5, 4)
    q, keys = torch.randn(3, 6), torch.randn(3, 7, 5)
    c, alpha = attn(q, keys)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))
    torch.testing.assert_close(c, (alpha[..., None] * keys).sum(1))
    # by hand: e_j = v^T tanh(W q + U h_j)
    e = (
        torch.tanh(
            q[:, None] @ attn.query_proj.weight.T
            + keys @ attn.key_proj.weight.T
        )
        @ attn.score.weight.T
    )
    torch.testing.assert_close(alpha, torch.softmax(e.squeeze(-1), -1))


@pytest.mark.parametrize("attention", [False, True])
def test_seq2seq_teacher_forcing_and_greedy_agree(attention):
    torch.manual_seed(0)
    model = R.Seq2Seq(hidden_size=16, embed_dim=8, attention=attention).eval()
    src = torch.randint(2, len(R.VOCAB), (3, 7))
    greedy = model.greedy_decode(src)
    assert greedy.shape == (3, 7)
    # fed its own greedy outputs as "teacher" inputs, the model makes the same choices
    logits = model(src, R.shift_right(greedy))
    assert torch.equal(logits.argmax(-1), greedy)
    if attention:
        assert model.last_attention.shape == (3, 7, 7)
    loss, extra = R.seq2seq_step(model.train(), (src, greedy))
    loss.backward()
    assert torch.isfinite(loss) and 0 <= extra["acc"] <= 1


def test_seq2seq_learns_short_rows_quickly():
    from vnotes import fit, seed_everything

    seed_everything(0)
    pairs = R.object_rows_task(16 * 64, min_len=3, max_len=4, seed=0)
    model = R.Seq2Seq(hidden_size=32, embed_dim=16, attention=True)
    fit(
        model,
        R.LengthBatches(pairs, 32, shuffle=True),
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        epochs=4,
        step_fn=R.seq2seq_step,
        precision="fp32",
        progress=False,
        verbose=False,
        device="cpu",
    )
    acc = R.accuracy_by_length(model.greedy_decode, pairs)
    assert min(acc.values()) > 0.8, acc


def test_prefix_lm_layout():
    p = R.object_rows_task(36, seed=0)
    x, y = R.prefix_lm_pairs(p)
    assert x.shape == y.shape == (36, 80)
    for i in range(36):
        L = int(p.lengths[i])
        assert x[i, 40] == R.BOS
        assert torch.equal(x[i, :L], p.src[i, :L])
        # target token t is predicted at position 40 + t, from the token before it
        assert torch.equal(y[i, 40 : 40 + L], p.tgt[i, :L])
        assert (y[i, :40] == -100).all() and (y[i, 40 + L :] == -100).all()
    prompts = R.prefix_lm_prompts(p.src[:2, :7])
    assert prompts.shape == (2, 41) and (prompts[:, 7:40] == R.PAD).all()


def test_length_curves_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("VNOTES_METRICS_DIR", str(tmp_path))
    assert R.load_length_curves("04_recurrent", "smoke") is None
    R.save_length_curves("04_recurrent", "smoke", {"a": {5: 0.5, 40: 0.25}})
    assert R.load_length_curves("04_recurrent", "smoke") == {
        "a": {5: 0.5, 40: 0.25}
    }
    assert R.mean_over({5: 0.5, 6: 1.0, 40: 0.0}, 5, 12) == 0.75
