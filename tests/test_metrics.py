"""helpers.metrics equals pycocoevalcap's Bleu(4) and Cider() on tokenised text; its edit
distance equals a plain recursive Levenshtein distance."""

from functools import cache

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from helpers.metrics import bleu, cer, cider, cider_per_image, edit_distance, human_agreement, word_accuracy
from helpers.text import tokenize

WORDS = "a the dog man red ball runs on grass in park with two small big".split()


def random_corpus(seed, n_images=40):
    rng = np.random.default_rng(seed)

    def sentence():
        return " ".join(rng.choice(WORDS, size=rng.integers(1, 12)))

    refs = {i: [sentence() for _ in range(rng.integers(1, 6))] for i in range(n_images)}
    hyps = {i: sentence() for i in range(n_images)}
    return refs, hyps


def coco(refs, hyps):
    gts = {k: list(v) for k, v in refs.items()}
    res = {k: [v] for k, v in hyps.items()}
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    c, per_image = Cider().compute_score(gts, res)
    return b, c, dict(zip(gts, per_image))


@pytest.mark.parametrize("seed", range(5))
def test_equal_to_pycocoevalcap_on_random_corpora(seed):
    refs, hyps = random_corpus(seed)
    b, c, per_image = coco(refs, hyps)
    assert np.allclose(bleu(refs, hyps), b, rtol=0, atol=1e-9)
    assert cider(refs, hyps) == pytest.approx(c, abs=1e-9)
    ours = cider_per_image(refs, hyps)
    assert list(ours) == list(refs) and np.allclose(
        [ours[k] for k in refs], [per_image[k] for k in refs], rtol=0, atol=1e-9
    )


def real_captions(shared_data, n_lines):
    """{image: [tokenised caption, ...]} of the first ``n_lines`` real Flickr30k captions."""
    refs = {}
    for line in (shared_data / "flickr30k" / "captions_karpathy.token").read_text().splitlines()[:n_lines]:
        name, text = line.split("\t")
        refs.setdefault(name.split("#")[0], []).append(" ".join(tokenize(text)))
    return refs


def test_equal_to_pycocoevalcap_on_real_captions(shared_data):
    refs = real_captions(shared_data, 1500)
    hyps = {k: v[0] for k, v in refs.items()}  # leave-one-out: caption 0 against the other four
    refs = {k: v[1:] for k, v in refs.items()}
    b, c, per_image = coco(refs, hyps)
    assert np.allclose(bleu(refs, hyps), b, rtol=0, atol=1e-9)
    assert cider(refs, hyps) == pytest.approx(c, abs=1e-9)
    ours = cider_per_image(refs, hyps)
    assert list(ours) == list(refs) and np.allclose(
        [ours[k] for k in refs], [per_image[k] for k in refs], rtol=0, atol=1e-9
    )


def test_human_agreement_is_the_mean_of_five_leave_one_out_rounds_of_pycocoevalcap(shared_data):
    refs = real_captions(shared_data, 1000)
    refs["lonely.jpg"] = ["a caption with no other"]  # takes part in no round
    rounds = []
    for k in range(5):
        held = {n: [v[k]] for n, v in refs.items() if len(v) > 1}
        others = {n: v[:k] + v[k + 1 :] for n, v in refs.items() if len(v) > 1}
        rounds.append([*Bleu(4).compute_score(others, held, verbose=0)[0], Cider().compute_score(others, held)[0]])
    expected = np.mean(rounds, axis=0)
    ours = human_agreement(refs)
    assert list(ours) == ["bleu1", "bleu2", "bleu3", "bleu4", "cider"]
    assert np.allclose(list(ours.values()), expected, rtol=0, atol=1e-9)
    assert 0.2 < ours["bleu4"] < ours["bleu1"] < 1  # people agree on words more than on phrasing


def test_human_agreement_needs_two_captions_and_uses_the_rounds_an_image_has():
    assert human_agreement({"a.jpg": ["a dog"], "b.jpg": ["a cat"]}) is None
    refs = {"a.jpg": ["a red ball", "a red ball", "a blue ball"], "b.jpg": ["two dogs run", "two dogs run"]}
    # rounds 0 and 1: every image; round 2: a.jpg only ('a blue ball' vs two 'a red ball')
    expected = np.mean(
        [
            bleu(*split) + [cider(*split)]
            for split in (
                (
                    {"a.jpg": ["a red ball", "a blue ball"], "b.jpg": ["two dogs run"]},
                    {"a.jpg": "a red ball", "b.jpg": "two dogs run"},
                ),
                (
                    {"a.jpg": ["a red ball", "a blue ball"], "b.jpg": ["two dogs run"]},
                    {"a.jpg": "a red ball", "b.jpg": "two dogs run"},
                ),
                ({"a.jpg": ["a red ball", "a red ball"]}, {"a.jpg": "a blue ball"}),
            )
        ],
        axis=0,
    )
    assert np.allclose(list(human_agreement(refs).values()), expected, rtol=0, atol=1e-12)


def test_perfect_and_empty_overlap():
    refs = {1: ["a dog runs on grass"], 2: ["two men in a park"]}
    assert bleu(refs, {1: "a dog runs on grass", 2: "two men in a park"}) == pytest.approx([1, 1, 1, 1])
    assert bleu(refs, {1: "cat", 2: "cat"})[0] < 1e-6


def test_punctuation_and_case_do_not_matter():
    refs = {1: ["A dog runs on the grass."]}
    assert bleu(refs, {1: "a dog runs on the grass"}) == pytest.approx([1, 1, 1, 1])


def test_mismatched_keys_are_named():
    with pytest.raises(ValueError, match="same keys"):
        bleu({1: ["a"]}, {2: "a"})
    with pytest.raises(ValueError, match="no reference captions for 1"):
        bleu({1: []}, {1: "a"})


@pytest.mark.slow  # starts Java where it is installed
def test_meteor_runs_or_says_why_not():
    from helpers.metrics import MetricUnavailableError, meteor, meteor_unavailable_reason

    refs = {1: ["a dog runs on the grass", "a brown dog running"], 2: ["two men in a park"]}
    reason = meteor_unavailable_reason()
    if reason:
        with pytest.raises(MetricUnavailableError) as err:
            meteor(refs, {1: "a dog runs", 2: "two men"})
        assert str(err.value) == reason and "METEOR needs" in reason and "\n" not in reason
        pytest.skip(reason)
    perfect = meteor(refs, {1: "a dog runs on the grass", 2: "two men in a park"})
    partial = meteor(refs, {1: "a dog", 2: "a cat"})
    assert 0 <= partial < perfect <= 1


# ----------------------------------------------------------------------------- reading text (notebook 07)


@cache
def levenshtein(a, b):
    if not a or not b:
        return len(a) + len(b)
    return min(levenshtein(a[1:], b) + 1, levenshtein(a, b[1:]) + 1, levenshtein(a[1:], b[1:]) + (a[0] != b[0]))


def test_edit_distance_equals_a_recursive_levenshtein():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = "".join(rng.choice(list("abc"), size=rng.integers(0, 8)))
        b = "".join(rng.choice(list("abc"), size=rng.integers(0, 8)))
        assert edit_distance(a, b) == levenshtein(a, b), (a, b)
    assert edit_distance("kitten", "sitting") == 3


def test_cer_and_word_accuracy():
    refs, hyps = ["hello", "1234", "dog"], ["hallo", "1234", "dogs"]
    assert cer(refs, hyps) == pytest.approx((1 + 0 + 1) / 12)
    assert word_accuracy(refs, hyps) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        cer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="references are all empty"):
        cer([""], ["x"])
