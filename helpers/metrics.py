"""Metrics (no TensorFlow): corpus BLEU-1..4 and CIDEr-D of captions, equal to pycocoevalcap's;
METEOR through pycocoevalcap; edit distance, character error rate and word accuracy of text
lines read by notebook 07's CRNN.

references: ``{key: [str, ...]}``; hypotheses: ``{key: str}``, the same keys.
Text is lower-cased and punctuation-stripped with ``helpers.text.tokenize``; on text that
is already tokenised this gives pycocoevalcap's ``Bleu(4)`` and ``Cider()`` to 1e-9.
"""

import math
from collections import Counter

from .text import tokenize


def _ngrams(words, n=4):
    """Counter of all 1..n-grams (tuples) of a list of words."""
    counts = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


def _prepare(references, hypotheses):
    if set(references) != set(hypotheses):
        missing = sorted(set(references) ^ set(hypotheses), key=str)[:3]
        raise ValueError(f"references and hypotheses must have the same keys; these differ: {missing}")
    if not references:
        raise ValueError("no captions to score")
    keys = list(references)
    refs, hyps = [], []
    for key in keys:
        if isinstance(hypotheses[key], (list, tuple)):
            raise TypeError(f"hypothesis for {key!r} must be one string, got {type(hypotheses[key]).__name__}")
        if not references[key]:
            raise ValueError(f"no reference captions for {key!r}")
        refs.append([tokenize(r) for r in references[key]])
        hyps.append(tokenize(hypotheses[key]))
    return refs, hyps


def bleu(references, hypotheses, n=4):
    """Corpus BLEU-1..n as fractions (0-1): ``[b1, b2, b3, b4]``.

    Clipped n-gram precisions summed over the corpus, their running geometric mean, and a
    brevity penalty against the closest reference length (the shorter one on ties).
    """
    refs, hyps = _prepare(references, hypotheses)
    tiny, small = 1e-15, 1e-9  # pycocoevalcap's guards against 0/0
    correct, guess = [0] * n, [0] * n
    test_len = ref_len = 0
    for ref_list, hyp in zip(refs, hyps):
        max_ref = Counter()
        for r in ref_list:
            max_ref |= _ngrams(r, n)  # | keeps the max count of each n-gram
        for gram, count in _ngrams(hyp, n).items():
            correct[len(gram) - 1] += min(count, max_ref[gram])
        for k in range(n):
            guess[k] += max(0, len(hyp) - k)
        test_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in ref_list)[1]
    scores, product = [], 1.0
    for k in range(n):
        product *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (test_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def cider(references, hypotheses, n=4, sigma=6.0):
    """CIDEr-D on pycocoevalcap's scale (0-10): the mean of ``cider_per_image``."""
    scores = cider_per_image(references, hypotheses, n, sigma)
    return sum(scores.values()) / len(scores)


def cider_per_image(references, hypotheses, n=4, sigma=6.0):
    """CIDEr-D of each hypothesis, ``{key: score}``, pycocoevalcap's per-image scores.

    The document frequencies come from the references of the whole corpus, so a score
    depends on the other images too: compare per-image scores within one corpus only.

    TF-IDF vectors of 1..n-grams (document frequency over the references of the corpus),
    clipped cosine similarity to each reference, a Gaussian penalty on the length difference,
    averaged over n and references, times 10. Like pycocoevalcap, the "length" in the penalty
    counts bigrams, so that the scores agree exactly.
    """
    refs, hyps = _prepare(references, hypotheses)
    ref_counts = [[_ngrams(r, n) for r in ref_list] for ref_list in refs]
    doc_freq = Counter()
    for counts in ref_counts:
        doc_freq.update(set().union(*counts))
    log_n_docs = math.log(float(len(refs)))

    def vectorise(counts):
        vec = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            vec[k][gram] = tf * (log_n_docs - math.log(max(1.0, doc_freq[gram])))
            norm[k] += vec[k][gram] ** 2
            if k == 1:
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    scores = []
    for hyp, counts in zip(hyps, ref_counts):  # keys in the order _prepare listed them
        vec_h, norm_h, len_h = vectorise(_ngrams(hyp, n))
        total = 0.0
        for ref in counts:
            vec_r, norm_r, len_r = vectorise(ref)
            penalty = math.exp(-((len_h - len_r) ** 2) / (2 * sigma**2))
            for k in range(n):
                val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec_h[k].items())
                if norm_h[k] != 0 and norm_r[k] != 0:
                    val /= norm_h[k] * norm_r[k]
                total += val * penalty
        scores.append(total / n / len(counts) * 10.0)
    return dict(zip(references, scores))


def human_agreement(references, rounds=5):
    """How well people agree with each other: leave-one-out BLEU-1..4 and CIDEr-D.

    For k = 0 .. rounds - 1, caption k of every image is scored as the hypothesis against that
    image's other captions (``bleu``, ``cider`` over the whole corpus), and the scores of the
    rounds are averaged. An image takes part in round k if it has a caption k and at least one
    other. It is not an upper bound: a model that writes the most common wording can score higher.

    references: ``{key: [str, ...]}``. Returns ``{"bleu1", "bleu2", "bleu3", "bleu4", "cider"}``,
    or None when no image has two captions.
    """
    totals, done = dict.fromkeys(("bleu1", "bleu2", "bleu3", "bleu4", "cider"), 0.0), 0
    for k in range(rounds):
        held = {key: refs[k] for key, refs in references.items() if len(refs) > max(k, 1)}
        if not held:
            continue
        others = {key: references[key][:k] + references[key][k + 1 :] for key in held}
        for name, value in zip(("bleu1", "bleu2", "bleu3", "bleu4"), bleu(others, held)):
            totals[name] += value
        totals["cider"] += cider(others, held)
        done += 1
    return {name: value / done for name, value in totals.items()} if done else None


# ----------------------------------------------------------------------------- reading text (notebook 07)


def edit_distance(a, b):
    """Levenshtein distance between two sequences (insertions, deletions, substitutions)."""
    prev = list(range(len(b) + 1))  # distances from a[:i - 1] to every prefix of b
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def cer(references, hypotheses):
    """Character error rate: total edit distance / total reference length."""
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    chars = sum(len(r) for r in references)
    if chars == 0:
        raise ValueError("the references are all empty: the character error rate is undefined")
    return sum(edit_distance(r, h) for r, h in zip(references, hypotheses)) / chars


def word_accuracy(references, hypotheses):
    """Share of lines read exactly right."""
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"need as many hypotheses as references, got {len(hypotheses)} and {len(references)}")
    return sum(r == h for r, h in zip(references, hypotheses)) / len(references)


class MetricUnavailableError(RuntimeError):
    """A metric whose external requirements (Java, data files) are missing here."""


def meteor_unavailable_reason():
    """None when METEOR can run here, else one sentence saying what is missing."""
    import importlib.util
    import shutil
    from pathlib import Path

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None:
        return "METEOR needs the pycocoevalcap package (pip install pycocoevalcap)"
    if shutil.which("java") is None:
        return "METEOR needs Java on the PATH (pycocoevalcap runs meteor-1.5.jar)"
    package = Path(next(iter(spec.submodule_search_locations)))  # a namespace package: no __init__.py
    data = package / "meteor" / "data" / "paraphrase-en.gz"
    if not data.is_file():
        return (
            f"METEOR needs {data}, which the pip package of pycocoevalcap does not include "
            "(copy it from the coco-caption repository)"
        )
    return None


def meteor(references, hypotheses):
    """METEOR 1.5 through pycocoevalcap (Java), on the same tokenisation as ``bleu``.

    Raises ``MetricUnavailableError`` with one sentence when Java or METEOR's data are missing.
    """
    reason = meteor_unavailable_reason()
    if reason:
        raise MetricUnavailableError(reason)
    from pycocoevalcap.meteor.meteor import Meteor

    refs, hyps = _prepare(references, hypotheses)
    gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [" ".join(h)] for i, h in enumerate(hyps)}
    score, _ = Meteor().compute_score(gts, res)
    return float(score)
