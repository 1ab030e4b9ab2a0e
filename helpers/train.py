"""Train a captioner (or notebook 07's text reader) from the command line, with checkpoints,
resume and test metrics.

    python -m helpers.train --model show_tell --out runs/show_tell
    python -m helpers.train --model show_tell --out runs/show_tell --resume
    python -m helpers.train --model attention --out runs/attention
    python -m helpers.train --model crnn --out runs/crnn
    python -m helpers.train --model show_tell --data /data/flickr30k --encoder resnet50 \\
        --epochs 20 --strategy mirrored --out runs/flickr30k
    python -m helpers.train --model show_tell --data /data/flickr30k --encoder resnet50 \\
        --fine-tune 10 --epochs 5 --out runs/flickr30k_fine_tuned

DIR/checkpoint.npz is replaced atomically after every epoch (weights, optimizer state,
history); ``--resume`` continues after the last finished epoch and ends with the same
metrics as an uninterrupted run, because each epoch's data order depends only on the seed
and the epoch number. DIR/metrics.json holds BLEU-1..4 and CIDEr on the test split for
greedy and beam search, the number of epochs, and the share of generated captions that
are not copied verbatim from a training caption; for ``--model attention`` on data with
``boxes.json`` also ``grounding`` and ``grounding_uniform`` (see ``grounding_scores``); for
``--model crnn`` the test ``cer`` and ``word_accuracy`` (see ``train_text_reader``).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import write_atomic

MODELS = ("show_tell", "attention", "crnn")
MODEL_DEFAULTS = {"show_tell": {"epochs": 10, "batch_size": 32}, "attention": {"epochs": 10, "batch_size": 32},
                  "crnn": {"epochs": 6, "batch_size": 64}}
CHECKPOINT = "checkpoint.npz"
FINE_TUNE_RATE = 0.1  # --fine-tune: the encoder's learning rate, as a share of the decoder's


class UsageError(ValueError):
    """Bad arguments or data, reported as one line."""


def write_json(path, obj):
    write_atomic(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m helpers.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: helpers.data.find_dataset())")
    p.add_argument("--encoder", default="small_cnn",
                   help="small_cnn (trained end to end, no download) or a keras.applications encoder from helpers.features")
    p.add_argument("--epochs", type=int, default=None, help="default: 10 for the captioners, 6 for crnn")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per batch, each with all its captions (default 32); text lines for crnn (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beam-width", type=int, default=3)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--min-count", type=int, default=5, help="rarer words become <unk>")
    p.add_argument("--max-len", type=int, default=30, help="tokens per caption, <start> and <end> included")
    p.add_argument("--image-size", type=int, default=None,
                   help="input side: 96 for small_cnn (the default), 224 for a fine-tuned keras.applications encoder")
    p.add_argument("--encoder-weights", default="imagenet",
                   help="weights of a keras.applications encoder: imagenet (downloaded on first use), none "
                        "(random), or a weights file")
    p.add_argument("--fine-tune", type=int, default=0, metavar="N",
                   help="--model show_tell with a keras.applications encoder: train its top N weighted layers "
                        "with the decoder, at a tenth of the learning rate, on pixels instead of cached features "
                        "(default 0: frozen)")
    p.add_argument("--attention-penalty", type=float, default=0.0,
                   help="lambda of the doubly stochastic attention penalty (--model attention; 0, the default, "
                        "is off: on the embedded data lambda = 1 blurs the maps, see notebook 06)")
    p.add_argument("--paper-decoder", action="store_true",
                   help="--model attention: also start the LSTM from the mean feature and feed it the context, "
                        "as Xu et al. do (the default lets the image reach each word only through its attention)")
    p.add_argument("--lines", type=int, default=24000,
                   help="--model crnn: training lines to render (validation and test get 1/24 and 1/12 as many)")
    p.add_argument("--strategy", choices=("default", "mirrored"), default="default")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    for name, value in MODEL_DEFAULTS[args.model].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.image_size is None:
        args.image_size = 224 if args.fine_tune else 96
    for name in ("epochs", "batch_size", "beam_width", "min_count", "image_size", "lines"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.max_len < 3:
        p.error(f"--max-len must be at least 3 (<start>, a word, <end>), got {args.max_len}")
    if args.fine_tune < 0:
        p.error(f"--fine-tune must be 0 or more, got {args.fine_tune}")
    return p, args


def encoder_weights(args):
    """--encoder-weights as ``build_encoder`` takes it."""
    if args.encoder_weights == "imagenet":
        return "imagenet"
    if args.encoder_weights.lower() == "none":
        return None
    if not Path(args.encoder_weights).is_file():
        raise UsageError(f"--encoder-weights {args.encoder_weights} is neither imagenet, none, nor a file")
    return args.encoder_weights


# ----------------------------------------------------------------------------- data


def prepare_data(args, log, progress=None):
    """Captions, vocabulary and image inputs (pixels for small_cnn, cached features otherwise)."""
    from . import shown_path
    from .data import find_dataset, load_flickr30k, load_image
    from .features import ENCODERS, build_encoder, extract_features
    from .text import Vocabulary

    if args.encoder not in ENCODERS:
        raise UsageError(f"unknown encoder {args.encoder!r}; choose one of {', '.join(ENCODERS)}")
    if args.data is not None and not args.data.is_dir():
        raise UsageError(f"--data {args.data} is not a folder")
    if args.fine_tune and (args.model != "show_tell" or args.encoder == "small_cnn"):
        raise UsageError("--fine-tune is for --model show_tell with a keras.applications --encoder "
                         "(small_cnn always trains end to end)")
    weights = encoder_weights(args)  # a bad --encoder-weights stops before any image is read
    root = args.data or find_dataset()
    df = load_flickr30k(root)
    images = df.drop_duplicates("image").reset_index(drop=True)
    for split in ("train", "test"):
        if not (images.split == split).any():
            raise UsageError(f"the dataset in {root} has no {split} images")
    row_of = {name: i for i, name in enumerate(images.image)}
    train = df[df.split == "train"]
    vocab = Vocabulary(train.caption, min_count=args.min_count)
    log(f"{len(images):,} images, {len(df):,} captions from {shown_path(root)}; vocabulary of {len(vocab):,} tokens")
    if args.encoder == "small_cnn" or args.fine_tune:  # pixels: the encoder trains inside the model
        from tqdm.auto import tqdm

        size = (args.image_size, args.image_size)
        bar = tqdm(images.path, desc="Loading images", disable=None if progress is None else not progress)
        inputs = np.stack([load_image(p, size=size) for p in bar])
    else:
        encoder = build_encoder(args.encoder, weights=weights, spatial=args.model == "attention")  # attention: the grid
        inputs = extract_features(encoder, images.path, progress=progress is not False)
    return dict(df=df, images=images, row_of=row_of, train=train, vocab=vocab, inputs=inputs)


def encode_captions(vocab, captions, max_len):
    """Captions -> int32 ids (C, T) with ``<start>``/``<end>``, cut to ``max_len`` tokens (the
    last kept is ``<end>``) and padded to the longest. NumPy only."""
    from .text import pad_captions

    encoded = []
    for c in captions:
        ids = vocab.encode(c)
        encoded.append(ids if len(ids) <= max_len else ids[: max_len - 1] + [vocab.end_id])
    return pad_captions(encoded)  # to the longest: every padded step costs LSTM time


# ----------------------------------------------------------------------------- checkpoints


def _optimizer_variables(optimizers):
    return [v for o in optimizers for v in o.variables]


def save_checkpoint(out, model, optimizers, epoch, history):
    """optimizers: a list (a fine-tuned encoder has an optimizer of its own)."""
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(_optimizer_variables(optimizers))})
    meta = json.dumps({"epoch": epoch, "history": history})
    write_atomic(out / CHECKPOINT, lambda f: np.savez(f, meta=np.array(meta), **arrays))


def _numbered(data, prefix):
    """The arrays ``{prefix}0``, ``{prefix}1``, ... of an open checkpoint, in order."""
    return [data[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) for k in data.files))]


def load_checkpoint(out, model, optimizers):
    path = out / CHECKPOINT
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint in {out}")
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            weights, opt = _numbered(data, "w"), _numbered(data, "o")
    except (OSError, ValueError, KeyError) as err:
        raise UsageError(f"--resume: {path} is unreadable ({err})") from None
    try:
        model.set_weights(weights)
        for var, value in zip(_optimizer_variables(optimizers), opt, strict=True):
            var.assign(value)
    except ValueError as err:
        raise UsageError(f"--resume: {path} does not fit this model and these arguments ({err})") from None
    return meta["epoch"], meta["history"]


# ----------------------------------------------------------------------------- evaluation


def _scores(references, hypotheses):
    from .metrics import bleu, cider

    b = bleu(references, hypotheses)
    return {"bleu1": b[0], "bleu2": b[1], "bleu3": b[2], "bleu4": b[3], "cider": cider(references, hypotheses)}


def evaluate(model, data, args):
    """Greedy and beam BLEU-1..4 / CIDEr on the test split, the novel-caption share, and
    the constant-caption baseline; for attention models on data with boxes, the grounding."""
    import tensorflow as tf

    from .decoding import beam_search, greedy_decode
    from .text import tokenize

    vocab, images, df = data["vocab"], data["images"], data["df"]
    test = images[images.split == "test"]
    references = df[df.split == "test"].groupby("image").caption.agg(list).to_dict()
    training = {" ".join(tokenize(c)) for c in data["train"].caption}
    results, generated = {}, {}
    for name in ("greedy", "beam"):
        hyps = {}
        for start in range(0, len(test), 256):
            chunk = test.iloc[start : start + 256]
            state = model.initial_state(tf.constant(data["inputs"][[data["row_of"][n] for n in chunk.image]]))
            if name == "greedy":
                out = greedy_decode(model.step, state, vocab.start_id, vocab.end_id, args.max_len)
            else:
                out = beam_search(model.step, state, vocab.start_id, vocab.end_id, args.beam_width, args.max_len)
            hyps.update({n: vocab.decode(o[0][0]) or "<empty>" for n, o in zip(chunk.image, out)})
        results[name] = _scores({n: references[n] for n in hyps}, hyps)
        generated[name] = hyps
    results["novel_fraction"] = float(np.mean([" ".join(tokenize(h)) not in training for h in generated["greedy"].values()]))
    # what a model that ignores the image gets: the most frequent training caption, everywhere
    constant = data["train"].caption.map(lambda c: " ".join(tokenize(c))).value_counts().index[0]
    refs = {n: references[n] for n in test.image}
    results["constant_caption"] = {"caption": constant, **_scores(refs, {n: constant for n in refs})}
    boxes = _boxes(images) if hasattr(model, "teacher_forced") else None
    if boxes:
        results["grounding"], results["grounding_uniform"] = grounding_scores(model, data, test, boxes, args.max_len)
    return results, generated


def _boxes(images):
    """The object boxes of the embedded dataset (``boxes.json`` beside the image folder), or None."""
    path = Path(images.path.iloc[0]).parent.parent / "boxes.json"
    return json.loads(path.read_text()) if path.is_file() else None


def grounding_scores(model, data, images, boxes, max_len=30):
    """Teacher-force every reference caption of ``images``; for each word that has a box in
    ``boxes`` ({file name: [{"word", "box"}]}), does the peak of the attention that produced
    it, upsampled to the image, fall inside the box? Returns (that share, the share a
    uniformly random peak would get)."""
    import tensorflow as tf

    from .attention import grounding
    from .data import load_image

    vocab, df = data["vocab"], data["df"]
    size = load_image(images.path.iloc[0]).shape[:2]
    pairs = []
    for start in range(0, len(images), 64):
        chunk = images.iloc[start : start + 64]
        refs = df[df.image.isin(set(chunk.image))]
        local = {name: i for i, name in enumerate(chunk.image)}
        tokens = encode_captions(vocab, refs.caption, max_len)
        _, alphas = model.teacher_forced(tf.constant(data["inputs"][[data["row_of"][n] for n in chunk.image]]),
                                         tf.constant(refs.image.map(local).to_numpy()), tf.constant(tokens))
        alphas = alphas.numpy()
        grid = int(round(alphas.shape[-1] ** 0.5))
        for row, (name, caption_tokens) in enumerate(zip(refs.image, tokens)):
            box_of = {b["word"]: b["box"] for b in boxes.get(name, [])}
            for t, token in enumerate(caption_tokens[1:]):
                word = vocab.id_to_token[token]
                if word in box_of:
                    pairs.append((alphas[row, t].reshape(grid, grid), box_of[word]))
    return grounding(pairs, size)


# ----------------------------------------------------------------------------- training


def caption_pipeline(inputs, images, captions_of, tokens, batch_size, pad_to=None):
    """The ``tf.data`` input pipeline of teacher forcing. Returns ``batches(order)``: a
    dataset of one epoch (it holds the epoch's inputs once more when listed), ``batch_size`` images at a time in the given order (positions in
    ``images``; a last, smaller batch is dropped), each image with all its captions, the
    captions padded to the **batch's** longest (not the data's: every padded step costs an
    LSTM step). Elements: (inputs (B, ...), image_index (C,) int32 into the batch's images,
    tokens (C, T_batch) int32).

    inputs: one row per image of the dataset; images: the training images' rows;
    captions_of: {image row: caption rows of ``tokens``}; tokens (N, T) padded with 0.
    pad_to: pad every batch to this length instead (a model that unrolls its steps in
    Python, like ``ShowAttendTell``, is traced once per length).
    """
    import tensorflow as tf

    chosen = tokens[np.concatenate([captions_of[i] for i in images])]
    # images -> their captions -> their tokens, without padding
    captions = tf.RaggedTensor.from_nested_row_lengths(chosen[chosen != 0],
                                                       [[len(captions_of[i]) for i in images], (chosen != 0).sum(1)])
    pixels = tf.constant(inputs[np.asarray(images)])

    def assemble(positions):
        batch = tf.gather(captions, positions)  # (B, captions, tokens), ragged
        return (tf.gather(pixels, positions), tf.cast(batch.value_rowids(), tf.int32),
                batch.values.to_tensor(0, shape=[None, pad_to]))

    def batches(order):
        return tf.data.Dataset.from_tensor_slices(np.asarray(order)).batch(batch_size, drop_remainder=True).map(assemble)

    return batches


def _replica_batches(strategy, batch):
    """One batch as it is, or with several replicas one share of its images (and their captions) each."""
    n = strategy.num_replicas_in_sync
    if n == 1:
        return batch
    import tensorflow as tf

    inputs, image_index, tokens = (t.numpy() for t in batch)
    shares = []
    for part in np.array_split(np.arange(len(inputs)), n):
        mine = (image_index >= part[0]) & (image_index <= part[-1])  # captions come grouped by image
        shares.append((inputs[part], image_index[mine] - part[0], tokens[mine]))
    return tuple(
        strategy.experimental_distribute_values_from_function(lambda ctx, k=k: tf.constant(shares[ctx.replica_id_in_sync_group][k]))
        for k in range(3)
    )


def build_model(name, vocab_size, args):
    """The captioner ``--model name`` trains: Show and Tell, or Show, Attend and Tell."""
    encoder = "small_cnn" if args.encoder == "small_cnn" else None
    if args.fine_tune:
        from .captioner import ShowAndTell

        return ShowAndTell(vocab_size, encoder=args.encoder, image_size=args.image_size, image_as="state",
                           fine_tune=args.fine_tune, encoder_weights=encoder_weights(args))
    if name == "attention":
        from .attention import ShowAttendTell

        return ShowAttendTell(vocab_size, encoder=encoder, image_size=args.image_size, penalty=args.attention_penalty,
                              init_from_mean=args.paper_decoder, context_into_lstm=args.paper_decoder)
    from .captioner import ShowAndTell

    return ShowAndTell(vocab_size, encoder=encoder, image_size=args.image_size, image_as="state")


def train_captioner(args, log=print, progress=None):
    """Train ``args.model`` (show_tell or attention) as the command line does; returns
    (metrics, model, data).

    progress: None shows bars on a terminal only, True always (notebooks), False never.
    """
    import keras
    import tensorflow as tf
    from tqdm.auto import tqdm

    from . import seed_everything
    from .captioner import make_train_step, trainable_parts

    seed_everything(args.seed)
    data = prepare_data(args, log, progress)
    vocab, train = data["vocab"], data["train"]
    tokens = encode_captions(vocab, train.caption, args.max_len)
    caption_image = train.image.map(data["row_of"]).to_numpy()
    captions_of = {int(i): rows for i, rows in pd.Series(caption_image).groupby(caption_image).indices.items()}
    train_images = np.array(sorted(captions_of))
    if len(train_images) < args.batch_size:
        raise UsageError(f"--batch-size {args.batch_size} is larger than the {len(train_images)} training images")

    strategy = tf.distribute.MirroredStrategy() if args.strategy == "mirrored" else tf.distribute.get_strategy()
    with strategy.scope():
        model = build_model(args.model, len(vocab), args)
        optimizer = keras.optimizers.Adam(args.learning_rate)
        model.initial_state(tf.constant(data["inputs"][:1]))  # build the weights
        model(tf.constant(data["inputs"][:1]), tf.constant([0]), tf.constant(tokens[:1]))
        decoder_vars, encoder_vars = trainable_parts(model, bool(args.fine_tune))
        optimizer.build(decoder_vars)
        optimizers = [optimizer]
        if args.fine_tune:  # the pretrained layers move ten times more slowly than the decoder
            optimizers.append(keras.optimizers.Adam(args.learning_rate * FINE_TUNE_RATE))
            optimizers[1].build(encoder_vars)
            log(f"fine-tuning the top {args.fine_tune} weighted layers of {args.encoder}: "
                f"{', '.join(model.fine_tuned_layers)}")
        unrolled = hasattr(model, "teacher_forced")  # attention unrolls its steps: one caption length
        pipeline = caption_pipeline(data["inputs"], train_images, captions_of, tokens, args.batch_size,
                                    pad_to=tokens.shape[1] if unrolled else None)
        # any number of images, captions and caption lengths: one trace (an unrolled model keeps
        # its static shapes, which its long graph needs to run fast)
        signature = None if unrolled else [tf.TensorSpec((None, *s.shape[1:]), s.dtype) for s in pipeline([0]).element_spec]
        train_step = make_train_step(model, optimizer, replicas=strategy.num_replicas_in_sync, input_signature=signature,
                                     encoder_optimizer=optimizers[1] if args.fine_tune else None)

    args.out.mkdir(parents=True, exist_ok=True)
    first_epoch, history = 0, []
    if args.resume:
        first_epoch, history = load_checkpoint(args.out, model, optimizers)
        log(f"resuming after epoch {first_epoch}")
    write_json(args.out / "vocab.json", {"id_to_token": vocab.id_to_token})
    write_json(args.out / "config.json", {"model": model.get_config(), "args": {k: str(v) for k, v in vars(args).items()},
                                          "class": type(model).__name__, "input_shape": list(data["inputs"].shape[1:])})

    boxes = _boxes(data["images"]) if hasattr(model, "teacher_forced") else None
    val_images = data["images"][data["images"].split == "val"]
    val_images = val_images if len(val_images) else None
    for epoch in range(first_epoch, args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(train_images))  # same order on resume
        start, losses = time.perf_counter(), []
        # the epoch's batches up front (a fraction of a second): on 2 cores, pulling each from a live
        # tf.data iterator between steps made the attention model's epochs 1.6x slower (41 s vs 25 s)
        batches = list(pipeline(order))
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", leave=False,
                   disable=None if progress is None else not progress)
        for batch in bar:
            loss, accuracy, _ = strategy.run(train_step, args=_replica_batches(strategy, batch))
            losses.append((float(strategy.reduce("MEAN", loss, None)), float(strategy.reduce("MEAN", accuracy, None))))
        loss, accuracy = np.mean(losses, axis=0)
        history.append({"epoch": epoch + 1, "loss": float(loss), "accuracy": float(accuracy),
                        "seconds": round(time.perf_counter() - start, 1)})
        if boxes and val_images is not None:  # attention: how well it looks, on held-out images
            history[-1]["val_grounding"], _ = grounding_scores(model, data, val_images, boxes, args.max_len)
        save_checkpoint(args.out, model, optimizers, epoch + 1, history)
        log(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.3f}, accuracy {accuracy:.3f}"
            + (f", validation grounding {history[-1]['val_grounding']:.2f}" if "val_grounding" in history[-1] else "")
            + f" ({history[-1]['seconds']:.0f} s)")

    metrics, generated = evaluate(model, data, args)
    metrics["epochs"] = args.epochs
    metrics["history"] = history
    write_json(args.out / "metrics.json", metrics)
    write_json(args.out / "captions.json", generated)
    return metrics, model, data


def train_text_reader(args, log=print, progress=None):
    """Train the CRNN (``--model crnn``) on rendered text lines as the command line does;
    returns (metrics, model, lines). metrics: test ``cer`` and ``word_accuracy`` (greedy
    CTC decoding) and the same under prefix beam search of width ``--beam-width``."""
    import keras
    import tensorflow as tf
    from tqdm.auto import tqdm

    from . import seed_everything
    from .crnn import (build_crnn, cer, decode_lines, frame_log_probs, line_inputs, load_text_lines, make_ctc_train_step,
                       pad_labels, read_text, word_accuracy)

    if args.strategy != "default":
        raise UsageError("--strategy mirrored is for the captioners; the CRNN trains on one device")
    if args.encoder != "small_cnn":
        raise UsageError("--encoder applies to the captioners; the CRNN has its own CNN")
    seed_everything(args.seed)
    sizes = {"train": args.lines, "val": max(args.lines // 24, 20), "test": max(args.lines // 12, 40)}
    lines = load_text_lines(args.data, sizes=sizes, progress=progress is not False)  # rendered once, then read from disk
    train_images, train_texts = lines["train"]
    if len(train_images) < args.batch_size:
        raise UsageError(f"--batch-size {args.batch_size} is larger than the {len(train_images)} training lines")
    labels, lengths = pad_labels(train_texts)
    model = build_crnn()
    steps = args.epochs * (len(train_images) // args.batch_size)  # the rate decays to 5% by the last step
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.learning_rate, steps, alpha=0.05))
    optimizer.build(model.trainable_variables)
    train_step = make_ctc_train_step(model, optimizer)

    args.out.mkdir(parents=True, exist_ok=True)
    first_epoch, history = 0, []
    if args.resume:
        first_epoch, history = load_checkpoint(args.out, model, [optimizer])
        log(f"resuming after epoch {first_epoch}")
    write_json(args.out / "config.json", {"model": {}, "args": {k: str(v) for k, v in vars(args).items()}, "class": "CRNN"})
    val_images, val_texts = lines["val"]
    for epoch in range(first_epoch, args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(train_images))  # same order on resume
        batches = [order[i : i + args.batch_size] for i in range(0, len(order) - args.batch_size + 1, args.batch_size)]
        start, losses = time.perf_counter(), []
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", leave=False,
                   disable=None if progress is None else not progress)
        for rows in bar:
            loss, _ = train_step(tf.constant(line_inputs(train_images[rows])), tf.constant(labels[rows]),
                                 tf.constant(lengths[rows]))
            losses.append(float(loss))
        val_cer = cer(val_texts, read_text(model, val_images))
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_cer": val_cer,
                        "seconds": round(time.perf_counter() - start, 1)})
        save_checkpoint(args.out, model, [optimizer], epoch + 1, history)
        log(f"epoch {epoch + 1}/{args.epochs}: CTC loss {history[-1]['loss']:.3f}, validation CER {val_cer:.4f} "
            f"({history[-1]['seconds']:.0f} s)")

    test_images, test_texts = lines["test"]
    log_probs = frame_log_probs(model, test_images)
    greedy, beam = decode_lines(log_probs), decode_lines(log_probs, args.beam_width)
    metrics = {"cer": cer(test_texts, greedy), "word_accuracy": word_accuracy(test_texts, greedy),
               "prefix_beam": {"beam_width": args.beam_width, "cer": cer(test_texts, beam),
                               "word_accuracy": word_accuracy(test_texts, beam)},
               "test_lines": len(test_texts), "frames": int(log_probs.shape[1]),
               "epochs": args.epochs, "history": history}
    write_json(args.out / "metrics.json", metrics)
    write_json(args.out / "readings.json", [{"text": t, "greedy": g, "beam": b} for t, g, b in zip(test_texts, greedy, beam)])
    return metrics, model, lines


def load_trained(out):
    """(model, vocabulary) of a finished or checkpointed run in folder ``out``; for a
    ``--model crnn`` run, (the CRNN, ``helpers.crnn.CHARSET``).

    The model takes what it was trained on: pixels for small_cnn and fine-tuned runs (the
    encoder's weights come from the checkpoint, nothing is downloaded); for a run on cached
    features (a frozen keras.applications ``--encoder``), those features, from
    ``build_encoder(name, spatial=...)`` and ``extract_features`` (config.json's ``args``
    names the encoder and its weights)."""
    import keras  # noqa: F401  (Keras before the model module, for its backend)
    import tensorflow as tf

    from .attention import ShowAttendTell
    from .captioner import ShowAndTell
    from .text import Vocabulary

    out = Path(out)
    for name in ("config.json", CHECKPOINT):
        if not (out / name).is_file():
            raise FileNotFoundError(f"no trained model in {out}: {name} is missing")
    saved = json.loads((out / "config.json").read_text())
    if saved.get("class") == "CRNN":
        from .crnn import CHARSET, build_crnn

        model = build_crnn(**saved["model"])
        with np.load(out / CHECKPOINT) as data:
            model.set_weights(_numbered(data, "w"))
        return model, CHARSET
    if not (out / "vocab.json").is_file():
        raise FileNotFoundError(f"no trained model in {out}: vocab.json is missing")
    config = saved["model"]
    vocab = Vocabulary.from_tokens(json.loads((out / "vocab.json").read_text())["id_to_token"])
    if "encoder_weights" in config:
        config["encoder_weights"] = None  # the checkpoint holds them: download nothing
    model = {"ShowAndTell": ShowAndTell, "ShowAttendTell": ShowAttendTell}[saved.get("class", "ShowAndTell")](**config)
    if config["encoder"]:
        shape = (config["image_size"], config["image_size"], 3)
    elif "input_shape" in saved:
        shape = saved["input_shape"]
    else:
        raise ValueError(f"{out} was trained on precomputed features by an older version that did not record "
                         f"their shape; train it again to load it")
    model(tf.zeros((1, *shape)), tf.constant([0]), tf.constant([[vocab.start_id, vocab.end_id]]))
    with np.load(out / CHECKPOINT) as data:
        model.set_weights(_numbered(data, "w"))
    return model, vocab


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        metrics, _, _ = (train_text_reader if args.model == "crnn" else train_captioner)(args)
    except (UsageError, FileNotFoundError, ValueError, RuntimeError) as err:
        parser.exit(2, f"error: {str(err).splitlines()[0]}\n")
    if args.model == "crnn":
        b = metrics["prefix_beam"]
        print(f"test CER greedy {metrics['cer']:.4f}, prefix beam {b['cer']:.4f}; lines read exactly "
              f"{metrics['word_accuracy']:.1%} / {b['word_accuracy']:.1%} -> {args.out / 'metrics.json'}")
        return
    g, b = metrics["greedy"], metrics["beam"]
    print(f"test BLEU-4 greedy {g['bleu4']:.3f}, beam {b['bleu4']:.3f}; CIDEr greedy {g['cider']:.3f}, beam {b['cider']:.3f}; "
          f"novel captions {metrics['novel_fraction']:.0%}"
          + (f"; grounding {metrics['grounding']:.2f} (uniform {metrics['grounding_uniform']:.2f})" if "grounding" in metrics else "")
          + f" -> {args.out / 'metrics.json'}")


if __name__ == "__main__":
    sys.exit(main())
