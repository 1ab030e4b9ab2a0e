"""Decoding captions from any model through its step function: greedy, beam search, sampling.

A model is seen only through ``step_fn(tokens, state) -> (log_probs, new_state)``:
tokens int (B,), state an array or a nested structure (dict, list, tuple) of arrays whose
leading dimension is B, log_probs (B, V) log-softmax. NumPy arrays and any Keras backend's
tensors work. ``compiled_step`` makes a Keras model's step function fast on its backend
(``compiled_forward`` does the same for a teacher-forced pass).

Every decoder returns one entry per item of the batch (N = leading dimension of
``initial_state``); an entry is a list of hypotheses, best first, each a pair
``(tokens, log_prob)``: ``tokens`` a list of int without ``<start>``, ending with ``end_id``
when it was produced (a hypothesis that reaches ``max_len`` tokens without it is finished as
it is), ``log_prob`` the sum of the model's log-probabilities of exactly those tokens.
"""

import numpy as np


def compiled_step(step):
    """Decorator for a Keras model's ``step`` method (written in ``keras.ops``): compiled into a
    graph where the Keras backend has a graph compiler for stateful code (TensorFlow's
    ``tf.function``, traced once per batch size), else left as it is. Decoding calls a step up
    to ``max_len`` times; run op by op, the Python around each op costs more than the maths
    for one image (notebook 05 decodes image by image 10 times more slowly that way)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return step
    import tensorflow as tf

    return tf.function(step, reduce_retracing=True)


def compiled_forward(method):
    """Decorator for a Keras model's teacher-forced pass ``method(self, images, image_index,
    tokens, training=False)`` that unrolls its steps in Python: called outside any graph and
    not training (validation, grounding), it runs compiled, traced once per input shape (an
    unrolled pass run op by op costs most of an epoch's validation); inside a train step's
    graph, or training, it runs as written. Other backends: left as it is."""
    import functools

    import keras

    if keras.backend.backend() != "tensorflow":
        return method
    import tensorflow as tf

    compiled = tf.function(method)

    @functools.wraps(method)
    def forward(self, images, image_index, tokens, training=False):
        if training or tf.inside_function():
            return method(self, images, image_index, tokens, training)
        # bound as tf.function binds methods: one function per model, which can build its weights
        return compiled.__get__(self, type(self))(images, image_index, tokens)

    return forward


def _map_state(fn, state):
    """Apply ``fn`` to every array of a nested state (dict, list, tuple, namedtuple)."""
    if isinstance(state, dict):
        return type(state)((k, _map_state(fn, v)) for k, v in state.items())
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(_map_state(fn, v) for v in state))
    if isinstance(state, (list, tuple)):
        return type(state)(_map_state(fn, v) for v in state)
    return fn(state)


def _first_leaf(state):
    if isinstance(state, dict):
        return _first_leaf(next(iter(state.values())))
    if isinstance(state, (list, tuple)):
        return _first_leaf(state[0])
    return state


def _gather(leaf, index):
    """Rows ``index`` of an array or tensor, keeping its kind (NumPy stays NumPy)."""
    if isinstance(leaf, np.ndarray):
        return leaf[index]
    from keras import ops  # a backend tensor: TensorFlow's, JAX's, ...

    return ops.take(leaf, index, axis=0)


def _batch_size(initial_state):
    return int(_first_leaf(initial_state).shape[0])


def _step(step_fn, tokens, state, batch):
    log_probs, state = step_fn(tokens, state)
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 2 or log_probs.shape[0] != batch:
        raise ValueError(f"step_fn must return log_probs of shape ({batch}, V), got {log_probs.shape}")
    return log_probs, state


def _check(start_id, end_id, max_len):
    if int(max_len) < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    return int(start_id), int(end_id), int(max_len)


def _beam_width(beam_width):
    if int(beam_width) < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    return int(beam_width)


def greedy_decode(step_fn, initial_state, start_id, end_id, max_len):
    """The most likely next token at every step. Returns ``[[(tokens, log_prob)]] * N``."""
    start_id, end_id, max_len = _check(start_id, end_id, max_len)
    return _decode_one_path(step_fn, initial_state, start_id, end_id, max_len, np.argmax)


def sample_decode(step_fn, initial_state, start_id, end_id, max_len, temperature=1.0, seed=0):
    """Draw each token from softmax(log_probs / temperature); ``log_prob`` is the model's own
    (untempered) log-probability of the drawn tokens. temperature 0 is greedy; the same seed
    gives the same captions. Returns ``[[(tokens, log_prob)]] * N``."""
    start_id, end_id, max_len = _check(start_id, end_id, max_len)
    if temperature < 0:
        raise ValueError(f"temperature must be 0 or more, got {temperature}")
    if temperature == 0:
        return _decode_one_path(step_fn, initial_state, start_id, end_id, max_len, np.argmax)
    rng = np.random.default_rng(seed)

    def choose(log_probs, axis):
        scaled = log_probs / temperature
        p = np.exp(scaled - scaled.max(axis=axis, keepdims=True))
        p /= p.sum(axis=axis, keepdims=True)
        u = rng.random((p.shape[0], 1))  # inverse-CDF draw: one random number per row
        return np.minimum((p.cumsum(axis=axis) < u).sum(axis=axis), p.shape[1] - 1)

    return _decode_one_path(step_fn, initial_state, start_id, end_id, max_len, choose)


def _decode_one_path(step_fn, state, start_id, end_id, max_len, choose):
    n = _batch_size(state)
    tokens = np.full(n, start_id, dtype=np.int64)
    log_prob = np.zeros(n)
    sequences = [[] for _ in range(n)]
    live = np.arange(n)  # items still decoding; the state holds only their rows
    for _ in range(max_len):
        log_probs, state = _step(step_fn, tokens, state, len(live))
        tokens = np.asarray(choose(log_probs, axis=1), dtype=np.int64)
        log_prob[live] += log_probs[np.arange(len(live)), tokens]
        for i, t in zip(live, tokens):
            sequences[i].append(int(t))
        going_on = tokens != end_id
        if not going_on.any():
            break
        if not going_on.all():  # drop finished rows: they would cost a step each and change nothing
            live, tokens = live[going_on], tokens[going_on]
            rows = np.flatnonzero(going_on)
            state = _map_state(lambda leaf, rows=rows: _gather(leaf, rows), state)
    return [[(sequences[i], float(log_prob[i]))] for i in range(n)]


def beam_search(step_fn, initial_state, start_id, end_id, beam_width, max_len, length_penalty=0.0):
    """Beam search over the whole batch at once (beams folded into the batch dimension).

    At every step the ``beam_width`` (k) best of all beam x vocabulary candidates of each item
    are taken; those that produce ``end_id`` (or reach ``max_len``) are set aside as finished,
    and the beam is refilled to k live hypotheses from the next best candidates (among the best
    2k at least k go on: each beam has one ``end_id``). The state is gathered by parent beam;
    finished items and dead beams leave the batch. An item stops when no live beam can still
    beat its k-th finished hypothesis; the batch stops when all items have.
    Ranking score: ``log_prob / len(tokens) ** length_penalty``.
    Returns, per item, up to ``beam_width`` hypotheses ``(tokens, log_prob)``, best first.
    """
    start_id, end_id, max_len = _check(start_id, end_id, max_len)
    k = _beam_width(beam_width)
    n = _batch_size(initial_state)
    # the state holds one row per live beam, in the order of ``rows`` (flat indices item * k + beam);
    # at the start all k beams of an item are the same, so only beam 0 is expanded
    state, rows = initial_state, np.arange(n) * k
    tokens = np.full(n, start_id, dtype=np.int64)
    scores = np.full((n, k), -np.inf)
    scores[:, 0] = 0.0
    history = np.zeros((n, k, 0), dtype=np.int64)
    finished = [[] for _ in range(n)]  # (score, tokens, log_prob), best first, at most k
    kth_finished = np.full(n, -np.inf)  # the score to beat once k hypotheses are finished
    done = np.zeros(n, dtype=bool)

    def score(log_prob, length):
        return log_prob / length**length_penalty

    for length in range(1, max_len + 1):
        step_log_probs, state = _step(step_fn, tokens, state, len(rows))
        vocab = step_log_probs.shape[1]
        log_probs = np.full((n * k, vocab), -np.inf)
        log_probs[rows] = step_log_probs
        candidates = (scores[:, :, None] + log_probs.reshape(n, k, vocab)).reshape(n, k * vocab)
        top = min(2 * k, k * vocab)  # 2k: enough live ones remain even if k of them end here
        best = np.argpartition(-candidates, top - 1, axis=1)[:, :top]
        best = np.take_along_axis(best, np.argsort(-np.take_along_axis(candidates, best, 1), axis=1, kind="stable"), 1)
        top_scores = np.take_along_axis(candidates, best, 1)
        beam_of, token_of = np.divmod(best, vocab)
        usable = np.isfinite(top_scores) & ~done[:, None]
        ending = (token_of == end_id) | (length == max_len)
        ends = usable & ending & (np.arange(top) < k)  # only the step's k best can finish: width 1 is greedy
        goes_on = usable & ~ending
        rank = np.cumsum(goes_on, axis=1) - 1  # the first k continuing candidates stay live
        item, pick = np.nonzero(goes_on & (rank < k))
        slot = rank[item, pick]
        new_scores = np.full((n, k), -np.inf)
        parents = np.zeros((n, k), dtype=np.int64)
        new_tokens = np.full((n, k), end_id, dtype=np.int64)
        new_scores[item, slot] = top_scores[item, pick]
        parents[item, slot] = beam_of[item, pick]
        new_tokens[item, slot] = token_of[item, pick]
        for i in np.unique(np.nonzero(ends)[0]):
            for j in np.nonzero(ends[i])[0]:
                lp, seq = float(top_scores[i, j]), [*history[i, beam_of[i, j]].tolist(), int(token_of[i, j])]
                finished[i].append((score(lp, length), seq, lp))
            finished[i].sort(key=lambda h: -h[0])
            del finished[i][k:]
            if len(finished[i]) == k:
                kth_finished[i] = finished[i][-1][0]
        # an item is done when no live beam can still beat its k-th finished hypothesis:
        # a live log-prob only falls as it grows, and its length is at most max_len
        best_live = new_scores.max(axis=1)
        with np.errstate(invalid="ignore"):
            bound = np.maximum(score(best_live, length + 1), score(best_live, max_len))
        done |= ~np.isfinite(best_live) | (bound <= kth_finished)
        if done.all() or length == max_len:
            break
        scores = np.where(done[:, None], -np.inf, new_scores)
        next_rows = np.flatnonzero(np.isfinite(scores))  # dead beams and finished items drop out
        row_of = np.full(n * k, -1)
        row_of[rows] = np.arange(len(rows))
        parent_rows = row_of[(next_rows // k) * k + parents.ravel()[next_rows]]
        state = _map_state(lambda leaf, index=parent_rows: _gather(leaf, index), state)
        rows, tokens = next_rows, new_tokens.ravel()[next_rows]
        history = np.concatenate([np.take_along_axis(history, parents[:, :, None], 1), new_tokens[:, :, None]], axis=2)
    return [[(seq, lp) for _, seq, lp in hyps] for hyps in finished]


def beam_search_tree(step_fn, state, start_id, end_id, beam_width, max_len, length_penalty=0.0):
    """Beam search for ONE item, one beam at a time, as notebook 05 teaches it: returns
    (hypotheses, tree). ``hypotheses`` are what ``beam_search`` returns for that item (same
    rules, same order); ``tree`` holds one dict per candidate looked at (id, parent, step,
    token, log_prob, score, status "live" / "finished" / "pruned"), for
    ``helpers.viz.draw_beam_tree``. ``state`` is the initial state of a batch of one."""
    start_id, end_id, max_len = _check(start_id, end_id, max_len)
    k = _beam_width(beam_width)

    def score(log_prob, length):
        return log_prob / length**length_penalty

    beams = [(0.0, [], state, None)]  # (log_prob, tokens, state, tree node) of each live beam
    finished, tree = [], []
    for length in range(1, max_len + 1):
        candidates = []
        for log_prob, tokens, beam_state, node in beams:
            log_probs, new_state = step_fn(np.array([tokens[-1] if tokens else start_id]), beam_state)
            log_probs = np.asarray(log_probs, dtype=np.float64)[0]
            candidates += [
                (log_prob + log_probs[t], [*tokens, t], new_state, node)
                for t in range(len(log_probs))
                if np.isfinite(log_probs[t])
            ]
        candidates.sort(key=lambda c: -c[0])
        beams = []
        for rank, (log_prob, tokens, new_state, parent) in enumerate(candidates[: 2 * k]):
            if tokens[-1] == end_id or length == max_len:  # only the step's k best may finish
                status = "finished" if rank < k else "pruned"
            else:
                status = "live" if len(beams) < k else "pruned"
            node = {"id": len(tree), "parent": parent, "step": length, "token": tokens[-1], "log_prob": float(log_prob)}
            tree.append({**node, "status": status, "score": float(score(log_prob, length))})
            if status == "finished":
                finished.append((score(log_prob, length), tokens, float(log_prob)))
            elif status == "live":
                beams.append((log_prob, tokens, new_state, len(tree) - 1))
        finished = sorted(finished, key=lambda f: -f[0])[:k]
        if not beams:
            break
        best_live = beams[0][0]  # the best any live beam can still reach: its log p only falls
        if len(finished) == k and max(score(best_live, length + 1), score(best_live, max_len)) <= finished[-1][0]:
            break
    return [(tokens, log_prob) for _, tokens, log_prob in finished], tree
