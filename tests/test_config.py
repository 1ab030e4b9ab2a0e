"""helpers.config.TrainConfig: defaults, validation in one sentence, and the command line as a
thin layer over it (every flag is a setting and back)."""

import dataclasses
from pathlib import Path

import pytest

from helpers.config import ConfigError, TrainConfig
from helpers.train import build_parser, config_from_args


def test_defaults_depend_on_the_model():
    assert (TrainConfig(model="show_tell", out="r").epochs, TrainConfig(model="show_tell", out="r").batch_size) == (
        10,
        16,
    )
    show_tell, attention = TrainConfig(model="show_tell", out="r"), TrainConfig(model="attention", out="r")
    small_cnn = ("cnn_blocks", "cnn_top_convs", "image_at_output")
    # both read a 12 x 12 grid; Show and Tell's cells see a whole shape and its output layer sees the image
    assert [getattr(show_tell, name) for name in small_cnn] == [3, 1, True]
    assert [getattr(attention, name) for name in small_cnn] == [3, 0, False]  # a wider cell blurs the maps
    # attention unrolls its decoder over every caption: it trains on 2 of each image's 5 an epoch
    assert (show_tell.captions_per_image, attention.captions_per_image) == (0, 2)
    assert (show_tell.where_into_lstm, attention.where_into_lstm) == (False, True)  # where attention looked
    crnn = TrainConfig(model="crnn", out="r")
    assert (crnn.epochs, crnn.batch_size, crnn.image_size) == (6, 64, 96)
    tuned = TrainConfig(model="show_tell", encoder="resnet50", fine_tune=3, out="r")
    assert tuned.image_size == 224 and tuned.weights_for_encoder() == "imagenet"
    assert TrainConfig(model="attention", out="r", epochs=2).epochs == 2
    assert isinstance(TrainConfig(model="show_tell", out="runs/x").out, Path)


@pytest.mark.parametrize("model", ["show_tell", "attention"])
def test_the_model_classes_default_to_the_command_lines_settings(model):
    # a notebook that builds the class and a run of the command line train the same architecture
    import inspect

    from helpers.attention import ShowAttendTell
    from helpers.captioner import ShowAndTell
    from helpers.config import MODEL_DEFAULTS

    parameters = inspect.signature({"show_tell": ShowAndTell, "attention": ShowAttendTell}[model]).parameters
    shared = [name for name in MODEL_DEFAULTS[model] if name in parameters]
    assert len(shared) >= 3  # cnn_blocks, cnn_top_convs and the model's own switch
    assert {name: parameters[name].default for name in shared} == {name: MODEL_DEFAULTS[model][name] for name in shared}


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"epochs": 0}, "`epochs` must be at least 1, got 0"),
        ({"batch_size": -2}, "`batch_size` must be at least 1, got -2"),
        ({"max_len": 2}, "`max_len` must be at least 3"),
        ({"learning_rate": float("nan")}, "`learning_rate` must be a positive number, got nan"),
        ({"fine_tune": -1}, "`fine_tune` must be 0 or more"),
        ({"fine_tune": 2}, "`fine_tune` is for `model` show_tell with a keras.applications `encoder`"),
        ({"encoder": "alexnet"}, "unknown encoder 'alexnet'"),
        ({"data": "/nonexistent/flickr"}, "`data` /nonexistent/flickr is not a folder"),
        (
            {"encoder_weights": "/nonexistent.h5"},
            "`encoder_weights` /nonexistent.h5 is neither imagenet, none, nor a file",
        ),
        ({"model": "rnn"}, "`model` must be one of show_tell, attention, crnn, got 'rnn'"),
        ({"model": "crnn", "strategy": "mirrored"}, "`strategy` mirrored is for the captioners"),
        ({"model": "crnn", "encoder": "resnet50"}, "`encoder` applies to the captioners"),
        ({"model": "crnn", "cnn_top_convs": 1}, "`cnn_blocks` and `cnn_top_convs` shape the captioners' small_cnn"),
        ({"model": "crnn", "image_at_output": True}, "`image_at_output` is for `model` show_tell"),
        ({"model": "attention", "image_at_output": True}, "`image_at_output` is for `model` show_tell"),
        ({"cnn_blocks": 5}, "`cnn_blocks` must be 1 to 4, got 5"),
        ({"cnn_top_convs": -1}, "`cnn_top_convs` must be 0 or more, got -1"),
        ({"where_into_lstm": True}, "`where_into_lstm` is for `model` attention"),
        ({"model": "crnn", "where_into_lstm": True}, "`where_into_lstm` is for `model` attention"),
        ({"captions_per_image": -1}, "`captions_per_image` must be 0 (all of them) or more, got -1"),
        ({"model": "crnn", "captions_per_image": 2}, "`captions_per_image` is for the captioners"),
        ({"encoder": "resnet50", "cnn_top_convs": 2}, "`cnn_top_convs` shape small_cnn, not `encoder` resnet50"),
    ],
)
def test_a_bad_setting_is_one_sentence_naming_it(changes, message):
    settings = {"model": "show_tell", "out": "r", **changes}
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**settings)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_command_line_names_settings_as_its_flags():
    err = ConfigError("`fine_tune` is for `model` show_tell with a keras.applications `encoder`; `batch_size` too")
    assert err.for_command_line() == (
        "--fine-tune is for --model show_tell with a keras.applications --encoder; --batch-size too"
    )


def test_every_flag_is_a_setting_and_the_parser_builds_the_same_config():
    flags = {a.dest for a in build_parser()._actions if a.dest != "help"}
    assert flags == {f.name for f in dataclasses.fields(TrainConfig)}
    _, config = config_from_args(["--model", "attention", "--epochs", "3", "--paper-decoder", "--out", "runs/a"])
    assert config == TrainConfig(model="attention", epochs=3, paper_decoder=True, out="runs/a")
    assert list(config.as_strings()) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert config.as_strings()["data"] == "None" and config.as_strings()["out"] == "runs/a"
    paper = ["--model", "show_tell", "--no-image-at-output", "--cnn-blocks", "4", "--cnn-top-convs", "0", "--out", "r"]
    assert config_from_args(paper)[1] == TrainConfig(
        model="show_tell", image_at_output=False, cnn_blocks=4, cnn_top_convs=0, out="r"
    )
    assert config_from_args(["--model", "show_tell", "--out", "r"])[1].image_at_output is True


def test_a_config_cannot_drift_from_what_was_validated():
    config = TrainConfig(model="show_tell", out="r")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 0
    with pytest.raises(ConfigError, match="`epochs` must be at least 1"):
        config.replace(epochs=0)
    assert config.replace(epochs=4, resume=True).epochs == 4
    assert TrainConfig(model="show_tell", encoder_weights=None, out="r").weights_for_encoder() is None


def test_bad_flags_exit_with_the_flag_named(capsys):
    with pytest.raises(SystemExit) as done:
        config_from_args(["--model", "show_tell", "--epochs", "0", "--out", "r"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("error: --epochs must be at least 1, got 0")
