"""Caption text: one tokenizer, the word vocabulary, and captions encoded as padded ids (no TensorFlow)."""

import re
from collections import Counter

import numpy as np

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

_NOT_WORD = re.compile(r"[^a-z0-9' ]+")


def tokenize(caption):
    """Lower-case, replace punctuation with spaces, split on whitespace.

    >>> tokenize("Two young, White males are outside.")
    ['two', 'young', 'white', 'males', 'are', 'outside']
    """
    text = _NOT_WORD.sub(" ", str(caption).lower().replace("\u2019", "'"))
    return [w.strip("'") for w in text.split() if w.strip("'")]


class Vocabulary:
    """Word <-> id mapping built from captions.

    Ids: ``<pad>`` = 0, ``<start>`` = 1, ``<end>`` = 2, ``<unk>`` = 3, then the words seen
    at least ``min_count`` times, most frequent first (ties alphabetical, so the ids do not
    depend on caption order).
    """

    def __init__(self, captions, min_count=1):
        if int(min_count) < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count!r}")
        if isinstance(captions, str):
            raise TypeError("Vocabulary expects a list of captions, got one string")
        counts = Counter()
        for i, caption in enumerate(captions):
            words = tokenize(caption)
            if not words:
                raise ValueError(f"caption {i} has no words: {caption!r}")
            counts.update(words)
        self.counts = counts
        self.min_count = int(min_count)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        self.id_to_token = list(SPECIALS) + kept
        self.token_to_id = {w: i for i, w in enumerate(self.id_to_token)}
        self.pad_id, self.start_id, self.end_id, self.unk_id = range(4)

    @classmethod
    def from_tokens(cls, id_to_token):
        """Rebuild a saved vocabulary from its ``id_to_token`` list (specials first)."""
        if list(id_to_token[:4]) != list(SPECIALS):
            raise ValueError(f"a saved vocabulary must start with {', '.join(SPECIALS)}; got {list(id_to_token[:4])}")
        vocab = cls.__new__(cls)
        vocab.counts, vocab.min_count = None, None
        vocab.id_to_token = list(id_to_token)
        vocab.token_to_id = {w: i for i, w in enumerate(vocab.id_to_token)}
        vocab.pad_id, vocab.start_id, vocab.end_id, vocab.unk_id = range(4)
        return vocab

    def __len__(self):
        return len(self.id_to_token)

    def __repr__(self):
        return f"Vocabulary({len(self)} tokens, min_count={self.min_count})"

    def encode(self, caption):
        """Caption -> ``[<start>, word ids..., <end>]``; unseen words become ``<unk>``."""
        words = tokenize(caption)
        if not words:
            raise ValueError(f"cannot encode a caption with no words: {caption!r}")
        return [self.start_id] + [self.token_to_id.get(w, self.unk_id) for w in words] + [self.end_id]

    def decode(self, ids):
        """Ids -> text: stops at ``<end>``, drops ``<pad>``/``<start>``/``<unk>``."""
        words = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.id_to_token):
                raise ValueError(f"token id {i} is outside this vocabulary of {len(self)} tokens")
            if i == self.end_id:
                break
            if i > self.unk_id:
                words.append(self.id_to_token[i])
        return " ".join(words)


def pad_captions(encoded, length=None, pad_id=0):
    """List of id lists -> int32 array (C, T), padded with ``pad_id`` (T: the longest)."""
    length = length or max(len(e) for e in encoded)
    out = np.full((len(encoded), length), pad_id, dtype=np.int32)
    for i, ids in enumerate(encoded):
        if len(ids) > length:
            raise ValueError(f"caption {i} has {len(ids)} tokens, more than the padded length {length}")
        out[i, : len(ids)] = ids
    return out


def encode_captions(vocab, captions, max_len):
    """Captions -> int32 ids (C, T) with ``<start>``/``<end>``, cut to ``max_len`` tokens (the
    last kept is ``<end>``) and padded with ``<pad>`` to the longest (T <= max_len)."""
    encoded = []
    for c in captions:
        ids = vocab.encode(c)
        encoded.append(ids if len(ids) <= max_len else ids[: max_len - 1] + [vocab.end_id])
    return pad_captions(encoded)  # to the longest: every padded step costs LSTM time
