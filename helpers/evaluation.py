"""Scoring a trained captioner on the test split, as ``metrics.json`` reports it: greedy and
beam-search BLEU-1..4 and CIDEr, the share of captions not copied from the training set,
the constant-caption baseline, human agreement (each reference against the others), on the
embedded dataset the scene accuracy (``helpers.mini_flickr.scene_scores``), and for attention
models on data with boxes the grounding; and, after every epoch, the validation scores that
choose the epoch kept (``validation_scores``).

The model is seen through ``initial_state`` and ``step`` (``helpers.decoding``) and, for
the grounding, ``teacher_forced``.
"""

import numpy as np

CHUNK = 256  # test images decoded at once


def caption_scores(references, hypotheses):
    """{bleu1..bleu4, cider} of ``hypotheses`` ({key: str}) against ``references`` ({key: [str]})."""
    from .metrics import bleu, cider

    b = bleu(references, hypotheses)
    return {"bleu1": b[0], "bleu2": b[1], "bleu3": b[2], "bleu4": b[3], "cider": cider(references, hypotheses)}


def decode_images(model, inputs, vocab, max_len, beam_width=None):
    """Captions (str) of the images whose model inputs are ``inputs`` (N, ...): greedy, or beam
    search of width ``beam_width``; an empty caption is written ``<empty>``."""
    from .decoding import beam_search, greedy_decode

    captions = []
    for start in range(0, len(inputs), CHUNK):
        state = model.initial_state(inputs[start : start + CHUNK])
        if beam_width is None:
            out = greedy_decode(model.step, state, vocab.start_id, vocab.end_id, max_len)
        else:
            out = beam_search(model.step, state, vocab.start_id, vocab.end_id, beam_width, max_len)
        captions += [vocab.decode(o[0][0]) or "<empty>" for o in out]
    return captions


def validation_scores(model, data, max_len, split="val"):
    """{val_loss, val_bleu4, val_cider} on the images of ``split``: the teacher-forced
    cross-entropy per word (as training measures it, without penalties) and greedy BLEU-4 and
    CIDEr against each image's captions; and ``val_grounding`` (``grounding_of``'s grounding)
    for an attention model on data with boxes, from the same teacher-forced pass."""
    from .pipeline import caption_chunks
    from .teacher_forcing import masked_loss_and_accuracy

    names = data.images[data.images.split == split].image.tolist()
    inputs = data.inputs_of(names)
    grounded = hasattr(model, "teacher_forced") and bool(data.boxes)  # attention: where it looks, too
    if grounded:
        from .attention import grounding, grounding_pairs
    total = words = 0.0
    pairs = []
    # 64 images and their captions at a time, padded as the grounding pads them: shared traces
    for start, stop, captions, image_index, targets in caption_chunks(names, data.df, data.vocab, max_len, CHUNK // 4):
        chunk = (inputs[start:stop], image_index, targets)
        if grounded:
            logits, alphas = model.teacher_forced(*chunk)
            pairs += grounding_pairs(alphas, captions.image, targets, data.vocab, data.boxes)
        else:
            logits = model(*chunk, training=False)
        loss, _ = masked_loss_and_accuracy(targets[:, 1:], logits)
        count = float((targets[:, 1:] != 0).sum())
        total, words = total + float(loss) * count, words + count
    scores = caption_scores(data.references(split), dict(zip(names, decode_images(model, inputs, data.vocab, max_len))))
    result = {"val_loss": total / words, "val_bleu4": scores["bleu4"], "val_cider": scores["cider"]}
    if grounded and pairs:
        result["val_grounding"] = grounding(pairs, data.sizes_of(names))["grounding"]
    return result


def evaluate_captioner(model, data, max_len, beam_width):
    """(metrics, generated captions {"greedy": {image: caption}, "beam": {...}}) on the test
    split of ``data`` (a ``helpers.training.CaptionData``)."""
    from .data import human_agreement_of
    from .text import tokenize

    test = data.images[data.images.split == "test"]
    inputs = data.inputs_of(test.image)
    references = data.references("test")
    training = {" ".join(tokenize(c)) for c in data.train.caption}
    results, generated = {}, {}
    for name, width in (("greedy", None), ("beam", beam_width)):
        hyps = dict(zip(test.image, decode_images(model, inputs, data.vocab, max_len, width)))
        results[name] = caption_scores({n: references[n] for n in hyps}, hyps)
        generated[name] = hyps
    novel = [" ".join(tokenize(h)) not in training for h in generated["greedy"].values()]
    results["novel_fraction"] = float(np.mean(novel))
    # what a model that ignores the image gets: the most frequent training caption, everywhere
    constant = data.train.caption.map(lambda c: " ".join(tokenize(c))).value_counts().index[0]
    refs = {n: references[n] for n in test.image}
    results["constant_caption"] = {"caption": constant, **caption_scores(refs, {n: constant for n in refs})}
    results["human_agreement"] = human_agreement_of(data.df)  # None: one caption per image
    if data.scenes:  # the embedded dataset: does each caption name what was drawn?
        from .mini_flickr import scene_scores

        results["scene"] = {name: scene_scores(generated[name], data.scenes) for name in ("greedy", "beam")}
    if hasattr(model, "teacher_forced") and data.boxes:
        results.update(grounding_of(model, data, "test", max_len))
    return results, generated


def grounding_of(model, data, split, max_len):
    """``helpers.attention.grounding_scores`` on the images of ``split``: {grounding, ...}."""
    from .attention import grounding_scores

    names = data.images[data.images.split == split].image.tolist()
    return grounding_scores(
        model, data.inputs_of(names), names, data.df, data.vocab, data.boxes, data.sizes_of(names), max_len
    )
