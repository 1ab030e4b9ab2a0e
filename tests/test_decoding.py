"""helpers.decoding against brute force on a tiny model with a real recurrent state."""

import itertools

import numpy as np
import pytest

from helpers.decoding import beam_search, beam_search_tree, greedy_decode, sample_decode

V, H, START, END = 5, 6, 3, 0


class TinyRNN:
    """A random tanh RNN language model: state (B, H); next-token log-probs from the state."""

    def __init__(self, seed, V=V, nested=False):
        rng = np.random.default_rng(seed)
        self.E, self.W, self.U = rng.normal(size=(V, H)), rng.normal(size=(H, H)) * 0.8, rng.normal(size=(H, V)) * 2
        self.nested = nested

    def initial(self, n, seed=1):
        h = np.random.default_rng(seed).normal(size=(n, H))
        return {"h": h, "extra": (h * 0, [h.copy()])} if self.nested else h

    def step(self, tokens, state):
        h = state["h"] if self.nested else state
        h = np.tanh(self.E[np.asarray(tokens)] + h @ self.W)
        logits = h @ self.U
        log_probs = (
            logits
            - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
            - logits.max(1, keepdims=True)
        )
        return log_probs, ({"h": h, "extra": state["extra"]} if self.nested else h)

    def score(self, state_row, tokens):
        """Teacher-forced sum of log-probs of ``tokens`` after <start>, for one item."""
        state, prev, total = state_row, START, 0.0
        for t in tokens:
            lp, state = self.step(np.array([prev]), state)
            total += lp[0, t]
            prev = t
        return total


def all_sequences(max_len):
    """Every finished hypothesis: ends with END at any length <= max_len, or has max_len tokens."""
    words = [t for t in range(V) if t != END]
    for length in range(1, max_len + 1):
        for body in itertools.product(words, repeat=length - 1):
            yield [*body, END]
    for body in itertools.product(words, repeat=max_len):
        yield list(body)


def brute_force(model, state_row, max_len, k, penalty=0.0):
    scored = [(model.score(state_row, s) / len(s) ** penalty, s) for s in all_sequences(max_len)]
    scored.sort(key=lambda x: -x[0])
    return scored[:k]


@pytest.mark.parametrize("penalty", [0.0, 0.7, 1.0])
def test_wide_beam_equals_exhaustive_search(penalty):
    model = TinyRNN(0)
    max_len, k = 4, 5
    state = model.initial(3)
    wide = beam_search(model.step, state, START, END, beam_width=V**max_len, max_len=max_len, length_penalty=penalty)
    for i in range(3):
        expected = brute_force(model, state[i : i + 1], max_len, k, penalty)
        got = wide[i][:k]
        assert [s for _, s in expected] == [s for s, _ in got]
        assert np.allclose([e for e, _ in expected], [lp / len(s) ** penalty for s, lp in got])


def test_narrow_beam_finds_what_greedy_misses():
    # not for every item: beam search may drop an ending that greedy keeps (notebook 05 shows one)
    model = TinyRNN(4)
    state = model.initial(20, seed=5)
    greedy = greedy_decode(model.step, state, START, END, max_len=6)
    beam = beam_search(model.step, state, START, END, beam_width=3, max_len=6)
    gain = np.array([b[0][1] - g[0][1] for g, b in zip(greedy, beam)])
    assert (gain > 1e-9).sum() > (gain < -1e-9).sum()


def test_width_one_is_greedy():
    # 300 items: some pass an <end> ranked second and must not keep it as a finished caption
    model = TinyRNN(1)
    state = model.initial(300)
    assert beam_search(model.step, state, START, END, 1, 7) == greedy_decode(model.step, state, START, END, 7)


def test_log_prob_is_the_teacher_forced_sum_and_hypotheses_are_best_first():
    model = TinyRNN(2)
    state = model.initial(4)
    for penalty in (0.0, 1.0):
        out = beam_search(model.step, state, START, END, beam_width=4, max_len=6, length_penalty=penalty)
        for i, hyps in enumerate(out):
            assert 1 <= len(hyps) <= 4
            for tokens, lp in hyps:
                assert lp == pytest.approx(model.score(state[i : i + 1], tokens), abs=1e-9)
                assert 1 <= len(tokens) <= 6  # the score above proves <start> is not among them
                assert tokens[-1] == END or len(tokens) == 6
                assert END not in tokens[:-1]
            ranks = [lp / len(t) ** penalty for t, lp in hyps]
            assert ranks == sorted(ranks, reverse=True)


def test_batch_equals_items_alone_and_nested_state_works():
    model = TinyRNN(3, nested=True)
    state = model.initial(5)
    together = beam_search(model.step, state, START, END, beam_width=3, max_len=6, length_penalty=0.5)
    for i in range(5):
        alone_state = {
            "h": state["h"][i : i + 1],
            "extra": (state["extra"][0][i : i + 1], [state["extra"][1][0][i : i + 1]]),
        }
        alone = beam_search(model.step, alone_state, START, END, beam_width=3, max_len=6, length_penalty=0.5)
        assert [t for t, _ in alone[0]] == [t for t, _ in together[i]]
        assert np.allclose([lp for _, lp in alone[0]], [lp for _, lp in together[i]])


def test_tensorflow_state_and_log_probs():
    import tensorflow as tf

    model = TinyRNN(6)

    def tf_step(tokens, state):
        lp, h = model.step(np.asarray(tokens), np.asarray(state))
        return tf.constant(lp), tf.constant(h)

    state = model.initial(3)
    expected = beam_search(model.step, state, START, END, 3, 5)
    assert beam_search(tf_step, tf.constant(state), START, END, 3, 5) == expected
    assert greedy_decode(tf_step, tf.constant(state), START, END, 5) == greedy_decode(model.step, state, START, END, 5)


def test_sampling_is_seeded_and_cools_to_greedy():
    model = TinyRNN(7)
    state = model.initial(8)
    a = sample_decode(model.step, state, START, END, 8, temperature=1.0, seed=3)
    assert a == sample_decode(model.step, state, START, END, 8, temperature=1.0, seed=3)
    assert a != sample_decode(model.step, state, START, END, 8, temperature=1.0, seed=4)
    for i, ((tokens, lp),) in enumerate(a):
        assert lp == pytest.approx(model.score(state[i : i + 1], tokens), abs=1e-9)
    greedy = greedy_decode(model.step, state, START, END, 8)
    assert sample_decode(model.step, state, START, END, 8, temperature=1e-4, seed=0) == greedy
    assert sample_decode(model.step, state, START, END, 8, temperature=0, seed=0) == greedy


def test_bad_arguments_get_clear_sentences():
    model = TinyRNN(0)
    with pytest.raises(ValueError, match="beam_width must be at least 1"):
        beam_search(model.step, model.initial(1), START, END, 0, 5)
    with pytest.raises(ValueError, match="max_len must be at least 1"):
        greedy_decode(model.step, model.initial(1), START, END, 0)
    with pytest.raises(ValueError, match="temperature must be 0 or more"):
        sample_decode(model.step, model.initial(1), START, END, 5, temperature=-1)
    with pytest.raises(ValueError, match=r"log_probs of shape \(2, V\), got \(3,\)"):
        greedy_decode(lambda t, s: (np.zeros(3), s), model.initial(2), START, END, 3)


def reference_beam(model, state_row, k, max_len, penalty, kept=None):
    """One item, no batching, no early exit: of the k best candidates, finish those that end; keep k live.
    kept: a list that receives every live or finished token sequence, as tuples."""
    live, finished = [(0.0, [], state_row)], []
    kept = [] if kept is None else kept
    for length in range(1, max_len + 1):
        candidates = []
        for lp, seq, state in live:
            log_probs, new_state = model.step(np.array([seq[-1] if seq else START]), state)
            candidates += [
                (lp + log_probs[0, t], seq + [t], new_state)
                for t in range(log_probs.shape[1])
                if np.isfinite(log_probs[0, t])
            ]
        candidates.sort(key=lambda c: -c[0])
        live = []
        for rank, (lp, seq, state) in enumerate(candidates[: 2 * k]):
            if seq[-1] == END or length == max_len:
                if rank < k:  # an ending candidate finishes only if it ranks among the step's k best
                    finished.append((lp / length**penalty, seq, lp))
                    kept.append(tuple(seq))
            elif len(live) < k:
                live.append((lp, seq, state))
                kept.append(tuple(seq))
    finished.sort(key=lambda f: -f[0])
    return [(seq, lp) for _, seq, lp in finished[:k]]


@pytest.mark.parametrize("penalty", [0.0, 0.6, 1.0, 2.0])
def test_early_exit_never_changes_the_result(penalty):
    for seed in range(12):
        model = TinyRNN(seed)
        state = model.initial(4, seed=seed)
        for k in (2, 3):
            ours = beam_search(model.step, state, START, END, beam_width=k, max_len=8, length_penalty=penalty)
            for i in range(4):
                ref = reference_beam(model, state[i : i + 1], k, 8, penalty)
                assert [t for t, _ in ours[i]] == [t for t, _ in ref], (seed, k, i)


class TableModel:
    """A language model given as a table {prefix: {next token: p}}; any other prefix ends."""

    def __init__(self, table):
        self.table, self.prefixes = table, [()]

    def step(self, tokens, state):
        log_probs = np.full((len(tokens), 8), -np.inf)
        new_state = np.empty(len(tokens), dtype=int)
        for i, (token, s) in enumerate(zip(tokens, state)):
            prefix = self.prefixes[s] + (() if token == START else (int(token),))
            if prefix not in self.prefixes:
                self.prefixes.append(prefix)
            new_state[i] = self.prefixes.index(prefix)
            for t, p in self.table.get(prefix, {0: 1.0}).items():
                log_probs[i, t] = np.log(p)
        return log_probs, new_state

    def score(self, _, tokens):
        return sum(np.log(self.table.get(tuple(tokens[:i]), {0: 1.0})[t]) for i, t in enumerate(tokens))


def test_beam_loses_to_greedy_where_k_candidates_outrank_the_greedy_caption():
    """Beam search can return a less probable caption than greedy (notebook 05 shows one on the
    real model): a pruning effect, not a bug. Tokens: 0 <end>, 3 <start>, 1 a, 2 b, 4 x, 5 y, 6 q."""
    a, b, x, y, q = 1, 2, 4, 5, 6
    model = TableModel(
        {
            (): {a: 0.40, b: 0.39, q: 0.21},
            (a,): {0: 0.30, q: 0.25, y: 0.25, x: 0.20},  # greedy: "a <end>", p = 0.12
            (b,): {x: 0.51, y: 0.49},  # "b x" and "b y" both outrank "a <end>" at step 2...
            (b, x): {0: 0.25, q: 0.25, a: 0.25, y: 0.25},  # ...and then spread out
            (b, y): {0: 0.25, q: 0.25, a: 0.25, x: 0.25},
        }
    )
    state = np.array([0])
    ((g_tokens, g_lp),) = greedy_decode(model.step, state, START, END, max_len=4)[0]
    assert g_tokens == [a, 0] and g_lp == pytest.approx(np.log(0.12))
    (b_tokens, b_lp), *_ = beam_search(model.step, state, START, END, beam_width=2, max_len=4)[0]
    assert b_tokens == [b, x, 0] and b_lp == pytest.approx(np.log(0.51 * 0.39 * 0.25)) and b_lp < g_lp
    kept = []
    assert reference_beam(model, state, 2, 4, 0.0, kept)[0][0] == b_tokens  # the textbook search agrees
    assert (a, 0) not in kept  # at step 2 "a <end>" ranked third of the candidates: pruned, not finished
    (w_tokens, w_lp), *_ = beam_search(model.step, state, START, END, beam_width=3, max_len=4)[0]
    assert w_tokens == [q, 0] and w_lp > g_lp  # one more beam keeps "q", which ends at once: p = 0.21


def countdown_step(sizes):
    """Item i says "word" i times, then <end>; records the batch size of every call."""

    def step(tokens, state):
        sizes.append(len(tokens))
        log_probs = np.full((len(tokens), V), np.log(0.1 / (V - 1)))
        log_probs[np.arange(len(tokens)), np.where(state == 0, END, 1)] = np.log(0.9)
        return log_probs, state - 1

    return step


def test_finished_items_leave_the_batch():
    # stepping a finished item costs time and changes nothing: greedy and beam drop its rows
    for decode in (
        lambda step, s: greedy_decode(step, s, START, END, 10),
        lambda step, s: beam_search(step, s, START, END, 1, 10),
    ):
        sizes = []
        out = decode(countdown_step(sizes), np.array([2, 0, 1]))
        assert [h[0][0] for h in out] == [[1, 1, END], [END], [1, END]]
        assert sizes == [3, 2, 1]


@pytest.mark.parametrize("penalty", [0.0, 1.0])
def test_the_one_item_beam_search_with_its_tree_returns_what_the_batched_one_does(penalty):
    for seed in range(8):
        model = TinyRNN(seed)
        state = model.initial(3, seed=seed)
        for k in (1, 2, 4):
            batched = beam_search(model.step, state, START, END, beam_width=k, max_len=6, length_penalty=penalty)
            for i in range(3):
                hyps, tree = beam_search_tree(model.step, state[i : i + 1], START, END, k, 6, penalty)
                assert [t for t, _ in hyps] == [t for t, _ in batched[i]], (seed, k, i)
                assert np.allclose([lp for _, lp in hyps], [lp for _, lp in batched[i]])
                # the tree: every finished hypothesis is a path of it, and log p adds up along the path
                by_id = {node["id"]: node for node in tree}
                ends = [n for n in tree if n["status"] == "finished"]
                for tokens, log_prob in hyps:
                    matches = []
                    for node in ends:
                        path, at = [], node
                        while at is not None:
                            path.append(at["token"])
                            at = by_id[at["parent"]] if at["parent"] is not None else None
                        if path[::-1] == tokens:
                            matches.append(node)
                    assert len(matches) == 1 and matches[0]["log_prob"] == pytest.approx(log_prob)
                assert all(n["parent"] is None or by_id[n["parent"]]["status"] == "live" for n in tree)


def test_the_one_item_beam_search_refuses_a_width_below_one():
    model = TinyRNN(0)
    with pytest.raises(ValueError, match="beam_width must be at least 1"):
        beam_search_tree(model.step, model.initial(1), START, END, 0, 5)
