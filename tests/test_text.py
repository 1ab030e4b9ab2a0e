import pytest

from helpers.text import Vocabulary, tokenize

CAPTIONS = ["A dog runs.", "A dog sits, happily!", "Two dogs run", "a cat"]


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("Two young, White males are outside.") == ["two", "young", "white", "males", "are", "outside"]
    assert tokenize('A sign reads "Ice Cream" & more') == ["a", "sign", "reads", "ice", "cream", "more"]
    assert tokenize("the man's hat") == ["the", "man's", "hat"]


def test_specials_and_frequency_order():
    v = Vocabulary(CAPTIONS)
    assert v.id_to_token[:6] == ["<pad>", "<start>", "<end>", "<unk>", "a", "dog"]
    assert v.token_to_id["<pad>"] == 0 and len(v) == len(v.token_to_id) == 4 + 9
    assert all(v.token_to_id[t] == i for i, t in enumerate(v.id_to_token))
    assert Vocabulary(list(reversed(CAPTIONS))).id_to_token == v.id_to_token  # order-independent ids


def test_encode_decode_round_trip_and_unknown_words():
    v = Vocabulary(CAPTIONS)
    ids = v.encode("A dog runs")
    assert ids[0] == v.token_to_id["<start>"] and ids[-1] == v.token_to_id["<end>"]
    assert v.decode(ids) == "a dog runs"
    assert v.encode("a zebra")[2] == v.token_to_id["<unk>"]
    assert v.decode(ids + [v.token_to_id["cat"]]) == "a dog runs"  # stops at <end>
    assert v.decode([v.token_to_id["a"], 0, 0]) == "a"


def test_min_count_drops_rare_words():
    v = Vocabulary(CAPTIONS, min_count=2)
    assert v.id_to_token[4:] == ["a", "dog"]
    assert v.decode(v.encode("a cat")) == "a"


def test_bad_input_gets_a_clear_sentence():
    with pytest.raises(ValueError, match=r"caption 1 has no words: '\.\.\.'"):
        Vocabulary(["a dog", "..."])
    v = Vocabulary(CAPTIONS)
    with pytest.raises(ValueError, match="cannot encode a caption with no words: ''"):
        v.encode("")
    with pytest.raises(ValueError, match="token id 99 is outside this vocabulary of 13 tokens"):
        v.decode([4, 99])
    with pytest.raises(ValueError, match="min_count must be at least 1"):
        Vocabulary(CAPTIONS, min_count=0)
    with pytest.raises(TypeError, match="list of captions"):
        Vocabulary("a dog runs")
