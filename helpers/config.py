"""The configuration of a training run: every knob, its default and its validation, in one
object that notebooks build directly and the command line builds from its flags.

    from helpers.config import TrainConfig
    config = TrainConfig(model="show_tell", epochs=4, out="runs/show_tell")

A bad value raises ``ConfigError`` in one sentence, before any data is read. No TensorFlow.
"""

import dataclasses
import math
import re
from pathlib import Path

from .features import APPLICATIONS, ENCODERS

MODELS = ("show_tell", "attention", "crnn")
MODEL_DEFAULTS = {
    "show_tell": {
        "epochs": 10,
        "batch_size": 16,
        "captions_per_image": 0,
        "cnn_blocks": 3,
        "cnn_top_convs": 1,
        "image_at_output": True,
        "where_into_lstm": False,
    },
    "attention": {
        "epochs": 10,
        "batch_size": 16,
        "captions_per_image": 2,  # of 5: as right at 10 epochs, each about 1.5x faster (the decoder unrolls)
        "cnn_blocks": 3,
        "cnn_top_convs": 0,
        "image_at_output": False,
        "where_into_lstm": True,
    },
    "crnn": {
        "epochs": 6,
        "batch_size": 64,
        "captions_per_image": 0,
        "cnn_top_convs": 0,
        "image_at_output": False,
        "where_into_lstm": False,
    },
}
# what a run saved before these settings existed was trained with (its config.json lacks them)
BEFORE_SETTINGS = {
    "show_tell": {"cnn_blocks": 4, "cnn_top_convs": 0, "image_at_output": False},
    "attention": {"captions_per_image": 0, "where_into_lstm": False},
}


class ConfigError(ValueError):
    """A setting that cannot work, in one sentence. Names in backticks are settings: the
    command line shows them as its flags (`batch_size` as --batch-size)."""

    def for_command_line(self):
        return re.sub(r"`(\w+)`", lambda m: "--" + m[1].replace("_", "-"), str(self))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run depends on (``python -m helpers.train -h`` describes each).

    model: 'show_tell', 'attention' or 'crnn'. out: the run folder (checkpoint, metrics).
    epochs and batch_size default per model (captioners 10 and 16, crnn 6 and 64);
    captions_per_image: how many of each image's captions an epoch trains on, drawn afresh
    each epoch (0: all; attention's default 2, show_tell's 0: ``helpers.pipeline``);
    image_size to 96, or 224 when fine-tuning. data: a dataset folder, or None for
    ``helpers.data.find_dataset()`` (for crnn: where the rendered lines are cached).
    cnn_blocks and cnn_top_convs shape the small CNN (``helpers.features.small_cnn``; show_tell
    3 and 1, attention 3 and 0); image_at_output (show_tell's default) gives show_tell's output
    layer the image at every word (``helpers.captioner``); where_into_lstm (attention's
    default) gives attention's LSTM where each step looked (``helpers.attention``).
    encoder_weights: 'imagenet', 'none' (or None) or a weights file. patience: stop after
    that many epochs without a better validation CIDEr (None: train every epoch). resume:
    continue the run in ``out``; overwrite: replace it (without either, a folder holding a
    run is refused: ``helpers.run_folder``).
    """

    model: str
    data: Path | None = None
    encoder: str = "small_cnn"
    epochs: int | None = None
    batch_size: int | None = None
    captions_per_image: int | None = None
    seed: int = 0
    beam_width: int = 3
    learning_rate: float = 1e-3
    min_count: int = 5
    max_len: int = 30
    image_size: int | None = None
    encoder_weights: str | None = "imagenet"
    fine_tune: int = 0
    fine_tune_rate: float = 0.1
    patience: int | None = None
    cnn_blocks: int | None = None
    cnn_top_convs: int | None = None
    image_at_output: bool | None = None
    where_into_lstm: bool | None = None
    attention_penalty: float = 0.0
    paper_decoder: bool = False
    lines: int = 24000
    strategy: str = "default"
    out: Path
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self):
        def fix(name, value):  # frozen: normalised values are set once, here
            object.__setattr__(self, name, value)

        if self.model not in MODELS:
            raise ConfigError(f"`model` must be one of {', '.join(MODELS)}, got {self.model!r}")
        for name, value in MODEL_DEFAULTS[self.model].items():
            if getattr(self, name) is None:
                fix(name, value)
        fix("image_at_output", bool(self.image_at_output))
        fix("where_into_lstm", bool(self.where_into_lstm))
        if self.image_size is None:
            fix("image_size", 224 if self.fine_tune else 96)
        fix("out", Path(self.out))
        if self.resume and self.overwrite:
            raise ConfigError("`resume` continues the run in `out` and `overwrite` replaces it: choose one")
        fix("data", None if self.data is None else Path(self.data))
        fix("encoder_weights", "none" if self.encoder_weights is None else str(self.encoder_weights))
        for name in ("epochs", "batch_size", "beam_width", "min_count", "image_size", "lines"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"`{name}` must be at least 1, got {getattr(self, name)}")
        if self.patience is not None and int(self.patience) < 1:
            raise ConfigError(f"`patience` must be at least 1 epoch, got {self.patience}")
        if self.max_len < 3:
            raise ConfigError(f"`max_len` must be at least 3 (<start>, a word, <end>), got {self.max_len}")
        if self.cnn_blocks is not None and not 1 <= int(self.cnn_blocks) <= 4:
            raise ConfigError(f"`cnn_blocks` must be 1 to 4, got {self.cnn_blocks}")
        if self.captions_per_image < 0:
            raise ConfigError(f"`captions_per_image` must be 0 (all of them) or more, got {self.captions_per_image}")
        if self.cnn_top_convs < 0:
            raise ConfigError(f"`cnn_top_convs` must be 0 or more, got {self.cnn_top_convs}")
        if self.fine_tune < 0:
            raise ConfigError(f"`fine_tune` must be 0 or more, got {self.fine_tune}")
        for name in ("learning_rate", "fine_tune_rate"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"`{name}` must be a positive number, got {getattr(self, name)}")
        if self.strategy not in ("default", "mirrored"):
            raise ConfigError(f"`strategy` must be default or mirrored, got {self.strategy!r}")
        if self.image_at_output and self.model != "show_tell":
            raise ConfigError("`image_at_output` is for `model` show_tell (attention's output layer has its context)")
        if self.where_into_lstm and self.model != "attention":
            raise ConfigError("`where_into_lstm` is for `model` attention (where its attention looked)")
        if self.model == "crnn":
            if self.strategy != "default":
                raise ConfigError("`strategy` mirrored is for the captioners; the CRNN trains on one device")
            if self.encoder != "small_cnn":
                raise ConfigError("`encoder` applies to the captioners; the CRNN has its own CNN")
            if self.captions_per_image:
                raise ConfigError("`captions_per_image` is for the captioners; a text line has one label")
            if self.cnn_blocks is not None or self.cnn_top_convs:
                raise ConfigError(
                    "`cnn_blocks` and `cnn_top_convs` shape the captioners' small_cnn; the CRNN has its own CNN"
                )
            return
        if self.encoder != "small_cnn" and any(
            getattr(self, name) != MODEL_DEFAULTS[self.model][name] for name in ("cnn_blocks", "cnn_top_convs")
        ):
            raise ConfigError(f"`cnn_blocks` and `cnn_top_convs` shape small_cnn, not `encoder` {self.encoder}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"unknown encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}")
        if self.data is not None and not self.data.is_dir():
            raise ConfigError(f"`data` {self.data} is not a folder")
        if self.fine_tune and (self.model != "show_tell" or self.encoder not in APPLICATIONS):
            raise ConfigError(
                "`fine_tune` is for `model` show_tell with a keras.applications `encoder` "
                "(small_cnn always trains end to end)"
            )
        self.weights_for_encoder()  # a bad encoder_weights stops here, before any image is read

    def weights_for_encoder(self):
        """``encoder_weights`` as ``helpers.features.build_encoder`` takes it: 'imagenet', None or a file."""
        if self.encoder_weights == "imagenet":
            return "imagenet"
        if self.encoder_weights.lower() == "none":
            return None
        if not Path(self.encoder_weights).is_file():
            raise ConfigError(f"`encoder_weights` {self.encoder_weights} is neither imagenet, none, nor a file")
        return self.encoder_weights

    def replace(self, **changes):
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_strings(self):
        """{setting: str(value)}, as a run's config.json records them."""
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}
