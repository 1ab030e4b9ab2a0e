"""helpers.training.fit, the one epoch loop: seeded order per epoch, history, a checkpoint after
every epoch, the per-epoch hook (validation scores, early stopping) and resume."""

import json

import keras
import numpy as np
import pytest

from helpers.checkpoints import CHECKPOINT
from helpers.config import ConfigError, TrainConfig
from helpers.training import fit, resume_point


class Recorder:
    """A stand-in for a train step: records each epoch's order and moves a weight, so that the
    checkpoint has something to keep."""

    def __init__(self, model):
        self.model, self.orders = model, []

    def batches(self, order):
        self.orders.append(order.tolist())
        return [(order[i : i + 2],) for i in range(0, len(order) - 1, 2)]  # the last odd one out is dropped

    def step(self, rows):
        self.model.weights[0].assign(self.model.weights[0] + 1.0)
        return {"loss": float(rows.sum()), "accuracy": 0.5}


def run(recorder, cfg, size, log=lambda *_: None, **kwargs):
    """``fit`` with the recorder's step and batches, quietly, no optimizer."""
    return fit(
        recorder.step,
        recorder.batches,
        size,
        model=recorder.model,
        optimizers=[],
        config=cfg,
        log=log,
        progress=False,
        **kwargs,
    )


def tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="only")])
    model.weights[0].assign(np.zeros((2, 1)))
    return model


def config(tmp_path, **changes):
    return TrainConfig(**{"model": "crnn", "epochs": 4, "seed": 7, "out": tmp_path / "run", **changes})


def test_each_epoch_has_its_seeded_order_a_record_and_a_checkpoint(tmp_path):
    cfg = config(tmp_path)
    cfg.out.mkdir()
    recorder = Recorder(tiny_model())
    logged = []
    history = run(recorder, cfg, 7, log=logged.append)
    expected = [np.random.default_rng([7, epoch]).permutation(7).tolist() for epoch in range(4)]
    assert recorder.orders == expected  # depends only on the seed and the epoch: the same after a resume
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for record, order in zip(history, expected):
        pairs = [order[i] + order[i + 1] for i in range(0, 6, 2)]
        assert record["loss"] == pytest.approx(np.mean(pairs)) and record["accuracy"] == 0.5 and record["seconds"] >= 0
    assert logged[0].startswith("epoch 1/4: loss ") and ", accuracy 0.5 (" in logged[0]
    with np.load(cfg.out / CHECKPOINT) as data:
        assert json.loads(str(data["meta"]))["epoch"] == 4
        np.testing.assert_array_equal(data["weights/only/kernel"], np.full((2, 1), 12.0))  # 3 steps x 4 epochs


def test_the_hook_adds_validation_scores_and_can_stop_early(tmp_path):
    cfg = config(tmp_path)
    cfg.out.mkdir()
    recorder = Recorder(tiny_model())

    seen = []

    def validate(record, before):
        seen.append([r["epoch"] for r in before])  # the epochs before this one
        record["val_score"] = 10 - record["epoch"]
        return record["epoch"] == 2  # stop after the second epoch

    history = run(recorder, cfg, 6, on_epoch_end=validate)
    assert [(h["epoch"], h["val_score"]) for h in history] == [(1, 9), (2, 8)]
    assert seen == [[], [1]]
    with np.load(cfg.out / CHECKPOINT) as data:
        assert json.loads(str(data["meta"]))["history"] == history  # the hook's scores are kept


def test_resume_continues_with_the_orders_an_uninterrupted_run_would_have_had(tmp_path):
    whole = config(tmp_path / "whole")
    whole.out.mkdir(parents=True)
    uninterrupted = Recorder(tiny_model())
    full = run(uninterrupted, whole, 5)

    part = config(tmp_path / "part", epochs=2)
    part.out.mkdir(parents=True)
    first = Recorder(tiny_model())
    run(first, part, 5)
    second = Recorder(tiny_model())
    logged = []
    start = resume_point(part.replace(epochs=4, resume=True), second.model, [], log=logged.append)
    assert start[0] == 2 and logged == ["resuming after epoch 2"]
    rest = run(second, part.replace(epochs=4), 5, start=start)
    assert first.orders + second.orders == uninterrupted.orders
    assert [h["loss"] for h in rest] == [h["loss"] for h in full]
    np.testing.assert_array_equal(second.model.get_weights()[0], uninterrupted.model.get_weights()[0])


def test_resume_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(ConfigError, match=r"`resume`: no checkpoint in .*nowhere"):
        resume_point(TrainConfig(model="crnn", resume=True, out=tmp_path / "nowhere"), tiny_model(), [])


def test_resume_cannot_shorten_a_run_below_the_epochs_it_has_trained(tmp_path):
    done = config(tmp_path, epochs=3)
    done.out.mkdir()
    run(Recorder(tiny_model()), done, 5)
    with pytest.raises(
        ConfigError, match=r"has trained 3 epochs, more than `epochs` 2; resume with `epochs` 3 or more"
    ):
        resume_point(done.replace(epochs=2, resume=True), tiny_model(), [])
    assert resume_point(done.replace(epochs=3, resume=True), tiny_model(), [], log=lambda _: None)[0] == 3


def test_the_best_epoch_is_the_first_with_the_highest_validation_cider():
    from helpers.training import best_epoch, patience_spent

    history = [{"epoch": e, "val_cider": c} for e, c in enumerate([0.5, 0.9, 0.7, 0.9, 0.8], 1)]
    assert best_epoch(history) == (2, 0.9)  # a tie is not an improvement
    assert best_epoch([{"epoch": 1, "loss": 1.0}]) == (None, None)  # nothing validated
    # epochs since the best: 3 after epoch 5
    assert [patience_spent(history, p) for p in (None, 1, 2, 3, 4)] == [False, True, True, True, False]
    assert [patience_spent(history[:k], 2) for k in range(1, 6)] == [False, False, False, True, True]


def test_a_notebooks_epoch_bar_is_left_drawn_at_its_end(tmp_path, monkeypatch):
    import tqdm.auto
    import tqdm.notebook

    bars = []

    class Remembered(tqdm.notebook.tqdm):  # the bar a notebook gets; kept to read after fit
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Remembered)
    cfg = config(tmp_path, epochs=2)
    cfg.out.mkdir()
    recorder = Recorder(tiny_model())
    fit(recorder.step, recorder.batches, 41, model=recorder.model, optimizers=[], config=cfg, log=lambda *_: None)
    # the widget a saved notebook keeps says 20 of 20 batches, not what its last redraw within 0.1 s
    # said (closing sets the bar's value but not its text)
    assert [bar.container.children[2].value.split("\u2007")[1] for bar in bars] == ["20/20", "20/20"]
