"""Training: the one epoch loop (``fit``) that serves both captioners and the CRNN, the two
runs built on it (``train_captioner``, ``train_text_reader``), and ``load_trained`` for the
models they leave in their run folder.

Notebooks and the command line (``python -m helpers.train``) call these with a
``helpers.config.TrainConfig``:

    from helpers.config import TrainConfig
    from helpers.training import train_captioner
    metrics, model, data = train_captioner(TrainConfig(model="show_tell", epochs=4, out="runs/show_tell"))

A run folder holds ``checkpoint.npz`` (replaced atomically after every epoch: weights by
path, optimizer state, history), ``config.json``, ``vocab.json`` (captioners), for a
captioner ``best_checkpoint.npz`` (the weights of the epoch with the best validation CIDEr,
which give the test scores), and at the end ``metrics.json`` and the test captions
(``captions.json``) or readings (``readings.json``). ``resume=True`` continues after the
last finished epoch and ends with the same metrics as an uninterrupted run: each epoch's
order depends only on the seed and the epoch number.
"""

import dataclasses
import functools
import inspect
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import write_atomic
from .checkpoints import BEST_CHECKPOINT, CHECKPOINT, load_checkpoint, save_checkpoint
from .config import BEFORE_SETTINGS, ConfigError
from .run_folder import check_vocabulary, claimed, saved_json

LABELS = {  # for the epoch's log line
    "val_loss": "validation loss",
    "val_bleu4": "BLEU-4",
    "val_cider": "CIDEr",
    "val_grounding": "validation grounding",
    "val_cer": "validation CER",
}


def write_json(path, obj):
    write_atomic(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


# ----------------------------------------------------------------------------- the epoch loop


def decaying_rate(start, steps):
    """A learning rate that decays along a cosine from ``start`` to 5% of it over ``steps``
    optimizer steps: large steps first, fine ones at the end."""
    import keras

    return keras.optimizers.schedules.CosineDecay(start, max(steps, 1), alpha=0.05)


def resume_point(config, model, optimizers, log=print):
    """(epochs done, history) to start from: the checkpoint's with ``config.resume``, else (0, []).
    A run cannot be shortened below the epochs it has trained (``config.epochs``)."""
    if not config.resume:
        return 0, []
    if not (config.out / CHECKPOINT).is_file():
        raise ConfigError(f"`resume`: no checkpoint in {config.out}")
    meta = load_checkpoint(config.out / CHECKPOINT, model, optimizers)
    if meta["epoch"] > config.epochs:
        raise ConfigError(
            f"`resume`: the run in {config.out} has trained {meta['epoch']} epochs, more than `epochs` "
            f"{config.epochs}; resume with `epochs` {meta['epoch']} or more, or start afresh with `overwrite`"
        )
    log(f"resuming after epoch {meta['epoch']}")
    return meta["epoch"], meta["history"]


def fit(step, batches, size, *, model, optimizers, config, start=(0, []), on_epoch_end=None, log=print, progress=None):
    """Train ``model`` from epoch ``start[0]`` to ``config.epochs``; returns the history, one
    record per epoch: ``{"epoch", <the step's values averaged>, "seconds", <the hook's>}``.

    step(*batch) -> {name: scalar} (e.g. loss, accuracy): one optimizer step on one batch.
    batches(order) -> the epoch's batches, ``order`` being a permutation of range(size) drawn
    from (``config.seed``, epoch): the same on resume. on_epoch_end(record, history): after
    each epoch's steps, with the records of the epochs before it; it may add entries to
    ``record`` (validation scores) and return True to stop training.
    After every epoch the checkpoint in ``config.out`` is replaced atomically.
    progress: None shows a bar on a terminal only, True always (notebooks), False never.
    start: (epochs done, their history), from ``resume_point``.
    """
    from tqdm.auto import tqdm

    first, history = start[0], list(start[1])
    for epoch in range(first, config.epochs):
        order = np.random.default_rng([config.seed, epoch]).permutation(size)
        began, values = time.perf_counter(), {}
        # the epoch's batches up front (a fraction of a second): on 2 cores, pulling each from a live
        # tf.data iterator between steps made the attention model's epochs 1.6x slower (41 s vs 25 s)
        epoch_batches = list(batches(order))
        bar = tqdm(
            total=len(epoch_batches),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            mininterval=0.5,  # fewer redraws: each is a message a notebook's kernel sends
            leave=False,
            disable=None if progress is None else not progress,
        )
        for batch in epoch_batches:
            for name, value in step(*batch).items():
                values.setdefault(name, []).append(float(value))
            bar.update()
        # drawn at its end before it closes: a bar redraws at most every 0.1 s, and a saved
        # notebook keeps what was drawn last (07's last epoch once read 374/375)
        bar.refresh()
        bar.close()
        record = {
            "epoch": epoch + 1,
            **{k: float(np.mean(v)) for k, v in values.items()},
            "seconds": round(time.perf_counter() - began, 1),
        }
        stop = bool(on_epoch_end(record, history)) if on_epoch_end else False
        history.append(record)
        save_checkpoint(config.out / CHECKPOINT, model, optimizers, {"epoch": epoch + 1, "history": history})
        shown = [f"{LABELS.get(k, k)} {v:.4g}" for k, v in record.items() if k not in ("epoch", "seconds")]
        log(f"epoch {epoch + 1}/{config.epochs}: {', '.join(shown)} ({record['seconds']:.0f} s)")
        if stop:
            break
    return history


def best_epoch(history):
    """(epoch, validation CIDEr) of the first epoch with the highest ``val_cider`` in
    ``history``, or (None, None) when no epoch was validated."""
    scored = [(r["val_cider"], -r["epoch"]) for r in history if "val_cider" in r]
    if not scored:
        return None, None
    cider, epoch = max(scored)
    return -epoch, cider


def patience_spent(history, patience):
    """Whether validation CIDEr has not improved for ``patience`` epochs (None: never stop)."""
    epoch, _ = best_epoch(history)
    return bool(patience) and epoch is not None and history[-1]["epoch"] - epoch >= patience


# ----------------------------------------------------------------------------- captioners


@dataclasses.dataclass
class CaptionData:
    """What a captioner trains and is scored on.

    df: every caption (``helpers.data.load_flickr30k``); images: one row per image, in the
    order of ``inputs`` (N, ...): pixels (small_cnn, fine-tuning) or cached features;
    train: the training captions; vocab: built on them; boxes: ``helpers.data.load_boxes``;
    scenes: what was drawn, on the embedded dataset (``helpers.mini_flickr.load_scenes``).
    """

    df: pd.DataFrame
    images: pd.DataFrame
    train: pd.DataFrame
    vocab: object
    inputs: np.ndarray
    boxes: dict
    scenes: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def row_of(self):
        return {name: i for i, name in enumerate(self.images.image)}

    def inputs_of(self, names):
        """The model inputs of the images named (file names), in that order."""
        return self.inputs[[self.row_of[n] for n in names]]

    def references(self, split):
        """{image file name: [its captions]} of the images of ``split``."""
        return self.df[self.df.split == split].groupby("image").caption.agg(list).to_dict()

    def sizes_of(self, names):
        """{file name: (height, width)} of the images named, read once: where their attention
        maps are upsampled to (real Flickr30k images differ in size; their boxes are in pixels)."""
        from .data import load_image

        sizes = self.__dict__.setdefault("_sizes", {})
        path_of = dict(zip(self.images.image, self.images.path))
        for name in names:
            if name not in sizes:
                sizes[name] = load_image(path_of[name]).shape[:2]
        return {name: sizes[name] for name in names}


def prepare_captions(config, log=print, progress=None):
    """The ``CaptionData`` of ``config``: captions, vocabulary (of the training split,
    ``config.min_count``) and image inputs (pixels for small_cnn and fine-tuning, else the
    features of ``config.encoder``, cached on disk)."""
    from . import shown_path
    from .data import find_dataset, load_boxes, load_flickr30k, load_image
    from .mini_flickr import load_scenes
    from .text import Vocabulary

    root = config.data or find_dataset()
    df = load_flickr30k(root)
    images = df.drop_duplicates("image").reset_index(drop=True)
    for split in ("train", "test"):
        if not (images.split == split).any():
            raise ConfigError(f"the dataset in {root} has no {split} images")
    train = df[df.split == "train"]
    vocab = Vocabulary(train.caption, min_count=config.min_count)
    log(f"{len(images):,} images, {len(df):,} captions from {shown_path(root)}; vocabulary of {len(vocab):,} tokens")
    if config.encoder == "small_cnn" or config.fine_tune:  # pixels: the encoder trains inside the model
        from tqdm.auto import tqdm

        size = (config.image_size, config.image_size)
        bar = tqdm(images.path, desc="Loading images", disable=None if progress is None else not progress)
        inputs = np.stack([load_image(p, size=size) for p in bar])
    else:  # the cached features of a frozen encoder (for attention, its spatial grid)
        spatial = config.model == "attention"
        inputs = frozen_features(config.encoder, config.weights_for_encoder(), spatial, images.path, progress)
    return CaptionData(
        df=df, images=images, train=train, vocab=vocab, inputs=inputs, boxes=load_boxes(root), scenes=load_scenes(root)
    )


def build_captioner(config, vocab_size):
    """The captioner ``config.model`` names: Show and Tell, or Show, Attend and Tell."""
    if config.model == "attention":
        from .attention import ShowAttendTell

        return ShowAttendTell(
            vocab_size,
            encoder="small_cnn" if config.encoder == "small_cnn" else None,
            image_size=config.image_size,
            cnn_blocks=config.cnn_blocks,
            cnn_top_convs=config.cnn_top_convs,
            penalty=config.attention_penalty,
            init_from_mean=config.paper_decoder,
            context_into_lstm=config.paper_decoder,
            where_into_lstm=config.where_into_lstm,
        )
    from .captioner import ShowAndTell

    if config.fine_tune:  # the pretrained encoder inside the model, reading pixels
        encoder, tuned = (
            config.encoder,
            {"fine_tune": config.fine_tune, "encoder_weights": config.weights_for_encoder()},
        )
    else:  # small_cnn on pixels, or None: cached features
        encoder, tuned = ("small_cnn" if config.encoder == "small_cnn" else None), {}
    return ShowAndTell(
        vocab_size,
        encoder=encoder,
        image_size=config.image_size,
        image_as="state",
        cnn_blocks=config.cnn_blocks,
        cnn_top_convs=config.cnn_top_convs,
        image_at_output=config.image_at_output,
        **tuned,
    )


def train_captioner(config, log=print, progress=None):
    """Train the captioner of ``config`` (model show_tell or attention), score it on the test
    split and write the run folder; returns (metrics, model, ``CaptionData``).

    progress: None shows bars on a terminal only, True always (notebooks), False never.
    The run folder ``config.out`` is the run's alone meanwhile (``helpers.run_folder``).
    """
    if config.model not in ("show_tell", "attention"):
        raise ConfigError(f"train_captioner trains show_tell or attention, not `model` {config.model}")
    with claimed(config, log):  # the run folder first: a bad --out fails before any data is read
        return _train_captioner(config, log, progress)


def _train_captioner(config, log, progress):
    import keras
    import tensorflow as tf

    from . import seed_everything
    from .evaluation import evaluate_captioner, validation_scores
    from .pipeline import caption_pipeline, captions_by_image, replica_batches
    from .teacher_forcing import make_train_step, trainable_parts
    from .text import encode_captions

    seed_everything(config.seed)
    data = prepare_captions(config, log, progress)
    check_vocabulary(config, data.vocab)
    tokens = encode_captions(data.vocab, data.train.caption, config.max_len)
    caption_image = data.train.image.map(data.row_of).to_numpy()
    captions_of = captions_by_image(caption_image)
    train_images = np.array(list(captions_of))
    if len(train_images) < config.batch_size:
        raise ConfigError(f"`batch_size` {config.batch_size} is larger than the {len(train_images)} training images")

    strategy = tf.distribute.MirroredStrategy() if config.strategy == "mirrored" else tf.distribute.get_strategy()
    with strategy.scope():
        model = build_captioner(config, len(data.vocab))
        first = data.inputs[:1]
        model.initial_state(first)  # build the weights
        model(first, np.array([0]), tokens[:1])
        decoder_vars, encoder_vars = trainable_parts(model, bool(config.fine_tune))
        steps = config.epochs * (len(train_images) // config.batch_size)
        optimizers = [keras.optimizers.Adam(decaying_rate(config.learning_rate, steps))]
        optimizers[0].build(decoder_vars)
        if config.fine_tune:  # the pretrained layers move more slowly than the decoder
            optimizers.append(keras.optimizers.Adam(decaying_rate(config.learning_rate * config.fine_tune_rate, steps)))
            optimizers[1].build(encoder_vars)
            log(
                f"fine-tuning the top {config.fine_tune} weighted layers of {config.encoder}: "
                f"{', '.join(model.fine_tuned_layers)}"
            )
        unrolled = hasattr(model, "teacher_forced")  # attention unrolls its steps: one caption length
        pipeline = caption_pipeline(
            data.inputs,
            train_images,
            captions_of,
            tokens,
            config.batch_size,
            pad_to=tokens.shape[1] if unrolled else None,
            captions_per_image=config.captions_per_image,
        )
        # any number of images, captions and caption lengths: one trace (an unrolled model keeps
        # its static shapes, which its long graph needs to run fast)
        signature = (
            None if unrolled else [tf.TensorSpec((None, *s.shape[1:]), s.dtype) for s in pipeline([0]).element_spec]
        )
        train_step = make_train_step(
            model,
            optimizers[0],
            replicas=strategy.num_replicas_in_sync,
            input_signature=signature,
            encoder_optimizer=optimizers[1] if config.fine_tune else None,
        )

    def step(*batch):
        loss, accuracy, _ = strategy.run(train_step, args=replica_batches(strategy, batch))
        return {"loss": strategy.reduce("MEAN", loss, None), "accuracy": strategy.reduce("MEAN", accuracy, None)}

    validated = bool((data.images.split == "val").any())
    if config.patience and not validated:
        raise ConfigError("`patience` stops on validation CIDEr, and this dataset has no val images")

    def validate(record, before):
        """Validation scores into the epoch's record; the best epoch's weights kept apart.
        Returns True to stop: ``config.patience`` epochs without a better CIDEr."""
        if not validated:
            return False
        record.update(validation_scores(model, data, config.max_len))  # attention's: val_grounding too
        history = [*before, record]
        if best_epoch(history)[0] == record["epoch"]:
            save_checkpoint(config.out / BEST_CHECKPOINT, model, meta={"epoch": record["epoch"]})
        return patience_spent(history, config.patience)

    start = resume_point(config, model, optimizers, log)
    write_json(config.out / "vocab.json", {"id_to_token": data.vocab.id_to_token})
    write_json(
        config.out / "config.json",
        {
            "model": model.get_config(),
            "args": config.as_strings(),
            "class": type(model).__name__,
            "input_shape": list(data.inputs.shape[1:]),
        },
    )
    if patience_spent(start[1], config.patience):  # a resumed run that had already stopped
        history = start[1]
    else:
        history = fit(
            step,
            pipeline,
            len(train_images),
            model=model,
            optimizers=optimizers,
            config=config,
            start=start,
            on_epoch_end=validate,
            log=log,
            progress=progress,
        )
    best, _ = best_epoch(history)
    if best is not None and best != history[-1]["epoch"]:
        load_checkpoint(config.out / BEST_CHECKPOINT, model)
        log(f"testing epoch {best}, the best by validation CIDEr")

    metrics, generated = evaluate_captioner(model, data, config.max_len, config.beam_width)
    metrics["epochs"] = len(history)
    metrics["best_epoch"] = best or len(history)
    metrics["history"] = history
    write_json(config.out / "metrics.json", metrics)
    write_json(config.out / "captions.json", generated)
    return metrics, model, data


# ----------------------------------------------------------------------------- the CRNN


def train_text_reader(config, log=print, progress=None):
    """Train the CRNN (``model="crnn"``) on rendered text lines, score it on the test lines and
    write the run folder; returns (metrics, model, lines). metrics: test ``cer`` and
    ``word_accuracy`` (greedy CTC decoding) and the same under prefix beam search of width
    ``config.beam_width``."""
    if config.model != "crnn":
        raise ConfigError(f"train_text_reader trains the crnn, not `model` {config.model}")
    with claimed(config, log):
        return _train_text_reader(config, log, progress)


def _train_text_reader(config, log, progress):
    import keras
    import tensorflow as tf

    from . import seed_everything
    from .crnn import (
        build_crnn,
        decode_lines,
        frame_log_probs,
        line_inputs,
        load_text_lines,
        make_ctc_train_step,
        pad_labels,
        read_text,
    )
    from .metrics import cer, word_accuracy

    seed_everything(config.seed)
    sizes = {"train": config.lines, "val": max(config.lines // 24, 20), "test": max(config.lines // 12, 40)}
    lines = load_text_lines(config.data, sizes=sizes, progress=progress is not False)  # rendered once, then read
    train_images, train_texts = lines["train"]
    if len(train_images) < config.batch_size:
        raise ConfigError(f"`batch_size` {config.batch_size} is larger than the {len(train_images)} training lines")
    labels, lengths = pad_labels(train_texts)
    model = build_crnn()
    steps = config.epochs * (len(train_images) // config.batch_size)
    optimizer = keras.optimizers.Adam(decaying_rate(config.learning_rate, steps))
    optimizer.build(model.trainable_variables)
    train_step = make_ctc_train_step(model, optimizer)
    size = config.batch_size

    def batches(order):
        return [(order[i : i + size],) for i in range(0, len(order) - size + 1, size)]

    def step(rows):
        loss, _ = train_step(
            tf.constant(line_inputs(train_images[rows])), tf.constant(labels[rows]), tf.constant(lengths[rows])
        )
        return {"loss": loss}

    val_images, val_texts = lines["val"]

    def validate(record, _):
        record["val_cer"] = cer(val_texts, read_text(model, val_images))

    start = resume_point(config, model, [optimizer], log)
    write_json(config.out / "config.json", {"model": {}, "args": config.as_strings(), "class": "CRNN"})
    history = fit(
        step,
        batches,
        len(train_images),
        model=model,
        optimizers=[optimizer],
        config=config,
        start=start,
        on_epoch_end=validate,
        log=log,
        progress=progress,
    )

    test_images, test_texts = lines["test"]
    log_probs = frame_log_probs(model, test_images)
    greedy, beam = decode_lines(log_probs), decode_lines(log_probs, config.beam_width)
    metrics = {
        "cer": cer(test_texts, greedy),
        "word_accuracy": word_accuracy(test_texts, greedy),
        "prefix_beam": {
            "beam_width": config.beam_width,
            "cer": cer(test_texts, beam),
            "word_accuracy": word_accuracy(test_texts, beam),
        },
        "test_lines": len(test_texts),
        "frames": int(log_probs.shape[1]),
        "epochs": len(history),
        "history": history,
    }
    write_json(config.out / "metrics.json", metrics)
    readings = [{"text": t, "greedy": g, "beam": b} for t, g, b in zip(test_texts, greedy, beam)]
    write_json(config.out / "readings.json", readings)
    return metrics, model, lines


# ----------------------------------------------------------------------------- trained models


def load_trained(out):
    """(model, vocabulary) of a finished or checkpointed run in folder ``out``; for a crnn
    run, (the CRNN, ``helpers.crnn.CHARSET``). A captioner gets the weights of its best epoch
    by validation CIDEr (``best_checkpoint.npz``, the ones its test scores are of) where the
    run has one, else those of its last epoch.

    The model takes what it was trained on: pixels for small_cnn and fine-tuned runs (the
    encoder's weights come from the checkpoint, nothing is downloaded); for a run on cached
    features (a frozen keras.applications ``encoder``), those features. ``inputs_of_run``
    gives either for image files."""
    from .attention import ShowAttendTell
    from .captioner import ShowAndTell
    from .text import Vocabulary

    out = Path(out)
    for name in ("config.json", CHECKPOINT):
        if not (out / name).is_file():
            raise FileNotFoundError(f"no trained model in {out}: {name} is missing")
    saved = saved_json(out / "config.json", "model")
    if saved.get("class") == "CRNN":
        from .crnn import CHARSET, build_crnn

        model = build_crnn(**saved["model"])
        load_checkpoint(out / CHECKPOINT, model)
        return model, CHARSET
    if not (out / "vocab.json").is_file():
        raise FileNotFoundError(f"no trained model in {out}: vocab.json is missing")
    config = saved["model"]
    vocab = Vocabulary.from_tokens(saved_json(out / "vocab.json", "id_to_token")["id_to_token"])
    if "encoder_weights" in config:
        config["encoder_weights"] = None  # the checkpoint holds them: download nothing
    cls, name = {"ShowAndTell": (ShowAndTell, "show_tell"), "ShowAttendTell": (ShowAttendTell, "attention")}[
        saved["class"]
    ]
    options = inspect.signature(cls).parameters  # saved before an option existed: the model of then
    config = {**{k: v for k, v in BEFORE_SETTINGS[name].items() if k in options}, **config}
    model = cls.from_config(config)
    shape = (config["image_size"], config["image_size"], 3) if config["encoder"] else saved["input_shape"]
    model(np.zeros((1, *shape), "float32"), np.array([0]), np.array([[vocab.start_id, vocab.end_id]]))
    best = out / BEST_CHECKPOINT  # the epoch the test scores are of
    load_checkpoint(best if best.is_file() else out / CHECKPOINT, model)
    return model, vocab


def inputs_of_run(out, paths, progress=None):
    """What the model of run folder ``out`` reads for the images at ``paths``: pixels (N, S, S, 3)
    for small_cnn and fine-tuned runs, else the features of the run's frozen encoder (N, F) or
    (N, G, G, F), from the feature cache where the run left them."""
    from .data import find_dataset, load_flickr30k, load_image

    saved = saved_json(Path(out) / "config.json", "model")
    model, args = saved["model"], saved["args"]
    paths = [str(p) for p in paths]
    if model.get("encoder"):  # the encoder is inside the model
        size = (model["image_size"], model["image_size"])
        return np.stack([load_image(p, size=size) for p in paths])
    encoder = (args["encoder"], None if args["encoder_weights"].lower() == "none" else args["encoder_weights"])
    spatial = saved["class"] == "ShowAttendTell"
    try:  # the cache holds shards of the run's images in the run's order: ask for those, then pick
        root = find_dataset(verbose=False) if args["data"] == "None" else args["data"]
        run_paths = load_flickr30k(root).drop_duplicates("image").path.tolist()
    except (FileNotFoundError, ValueError):  # the dataset has moved: compute what is asked
        run_paths = []
    if not set(paths) <= set(run_paths):
        return frozen_features(*encoder, spatial, paths, progress)
    row = {p: i for i, p in enumerate(run_paths)}
    return frozen_features(*encoder, spatial, run_paths, progress)[[row[p] for p in paths]]


def frozen_features(encoder, weights, spatial, paths, progress=None):
    """Features of the images at ``paths`` by the frozen keras.applications ``encoder`` (with
    ``weights``), through the feature cache: pooled (N, F) float32, or with ``spatial`` the
    grid (N, G, G, F) in float16, which halves it (Flickr30k's ResNet50 grids: 6.4 GB)."""
    from .features import build_encoder, extract_features

    model = build_encoder(encoder, weights=weights, spatial=spatial)
    return extract_features(model, paths, progress=progress is not False, dtype="float16" if spatial else "float32")
