"""python -m helpers.train: metrics.json, atomic checkpoints, resume after kill -9 at a chosen point, clear errors,
runs that load back."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from helpers import PROJECT_ROOT

pytestmark = pytest.mark.slow  # each test trains in a subprocess

FAST = ["--model", "show_tell", "--batch-size", "8", "--image-size", "32", "--min-count", "1", "--max-len", "20"]


def run(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "helpers.train", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=PROJECT_ROOT,
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from helpers.data import make_mini_flickr

    return make_mini_flickr(tmp_path_factory.mktemp("train") / "mini", n_images=48, seed=1)


@pytest.fixture(scope="module")
def uninterrupted(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    done = run(*FAST, "--data", small, "--epochs", 3, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


def test_metrics_json_has_the_designed_fields(uninterrupted, small):
    metrics = json.loads((uninterrupted / "metrics.json").read_text())
    for decoder in ("greedy", "beam"):
        assert set(metrics[decoder]) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider"}
        assert all(0 <= metrics[decoder][k] <= 1 for k in ("bleu1", "bleu2", "bleu3", "bleu4"))
    assert metrics["epochs"] == 3 and 0 <= metrics["novel_fraction"] <= 1
    assert set(metrics["human_agreement"]) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider"}
    for decoder in ("greedy", "beam"):  # the embedded dataset: are the captions right about the scene?
        scene = metrics["scene"][decoder]
        assert set(scene) == {"exact", "object_precision", "object_recall", "relation", "by_objects"}
        assert 0 <= scene["exact"] <= 1 and set(scene["by_objects"]) <= {"1", "2", "3"}
    from helpers.mini_flickr import load_scenes, scene_scores

    captions = json.loads((uninterrupted / "captions.json").read_text())["greedy"]

    assert metrics["scene"]["greedy"] == scene_scores(captions, load_scenes(small))
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert all({"loss", "val_loss", "val_bleu4", "val_cider"} <= set(h) for h in metrics["history"])
    from helpers.training import best_epoch

    assert metrics["best_epoch"] == best_epoch(metrics["history"])[0]
    assert (uninterrupted / "checkpoint.npz").is_file() and (uninterrupted / "best_checkpoint.npz").is_file()
    assert not [p for p in uninterrupted.iterdir() if ".tmp-" in p.name]


def test_validation_scores_are_what_they_say(uninterrupted, small):
    """The last epoch's validation loss, BLEU-4 and CIDEr, recomputed from its checkpoint
    without helpers.evaluation: caption by caption in NumPy, and with pycocoevalcap."""
    import numpy as np
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    from helpers.checkpoints import load_checkpoint
    from helpers.data import load_flickr30k, load_image
    from helpers.decoding import greedy_decode
    from helpers.text import tokenize
    from helpers.training import load_trained

    record = json.loads((uninterrupted / "metrics.json").read_text())["history"][-1]
    model, vocab = load_trained(uninterrupted)
    load_checkpoint(uninterrupted / "checkpoint.npz", model)  # the last epoch, which the record scores
    val = load_flickr30k(small).query("split == 'val'")
    images = val.drop_duplicates("image")
    pixels = {n: load_image(p, size=(32, 32)) for n, p in zip(images.image, images.path)}
    losses = []
    for name, caption in zip(val.image, val.caption):
        ids = vocab.encode(caption)[:20]
        ids[-1] = vocab.end_id  # cut as training cuts: the last kept token is <end>
        logits = np.asarray(model(pixels[name][None], np.array([0]), np.array([ids])))[0]
        log_p = logits - logits.max(-1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
        losses += [-log_p[t, w] for t, w in enumerate(ids[1:])]
    assert record["val_loss"] == pytest.approx(np.mean(losses), rel=1e-4)

    x = np.stack(list(pixels.values()))
    out = greedy_decode(model.step, model.initial_state(x), vocab.start_id, vocab.end_id, 20)
    hyps = {n: [vocab.decode(o[0][0]) or "<empty>"] for n, o in zip(pixels, out)}
    refs = {n: [" ".join(tokenize(c)) for c in g] for n, g in val.groupby("image").caption}
    assert record["val_bleu4"] == pytest.approx(Bleu(4).compute_score(refs, hyps, verbose=0)[0][3], abs=1e-9)
    assert record["val_cider"] == pytest.approx(Cider().compute_score(refs, hyps)[0], abs=1e-9)


def test_patience_stops_where_validation_stopped_improving_and_tests_the_best_epoch(small, tmp_path):
    from helpers.training import best_epoch, patience_spent

    out = tmp_path / "patient"
    done = run(*FAST, "--data", small, "--epochs", 6, "--patience", 1, "--out", out)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    stops = [k for k in range(1, 7) if patience_spent(history[:k], 1)]
    assert len(history) == (stops[0] if stops else 6) == metrics["epochs"]
    assert metrics["best_epoch"] == best_epoch(history)[0]
    if metrics["best_epoch"] != metrics["epochs"]:
        assert f"epoch {metrics['best_epoch']} of {metrics['epochs']}, the best by validation CIDEr" in done.stdout
    # resuming a run that stopped trains nothing more and tests the same epoch
    again = run(*FAST, "--data", small, "--epochs", 6, "--patience", 1, "--out", out, "--resume")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "metrics.json").read_text())["greedy"] == metrics["greedy"]
    assert f"resuming after epoch {len(history)}" in again.stdout
    assert not re.search(r"^epoch \d+/6:", again.stdout, re.M)


def killed_at(point, argv):
    """Run ``python -m helpers.train argv`` in a process that kills itself (SIGKILL: no cleanup,
    no exception handlers) at ``point``, a snippet that patches helpers.training or its helpers."""
    script = (
        textwrap.dedent("""
        import os, signal
        import helpers.checkpoints, helpers.crnn, helpers.training
        def die():
            os.kill(os.getpid(), signal.SIGKILL)
    """)
        + textwrap.dedent(point)
        + f"\nfrom helpers.train import main\nmain({[str(a) for a in argv]!r})\n"
    )
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )


# halfway through writing epoch 2's checkpoint: its temporary file is torn, epoch 1's is whole
DIE_WRITING_THE_SECOND_CHECKPOINT = """
    real, calls = helpers.checkpoints.write_atomic, []
    def write_atomic(path, fill):
        if not str(path).endswith("/checkpoint.npz"):  # the best epoch's weights: written whole
            return real(path, fill)
        calls.append(path)
        if len(calls) < 2:
            return real(path, fill)
        def torn(f):
            fill(f)
            f.truncate(f.tell() // 2)
            f.flush()
            die()
        return real(path, torn)
    helpers.checkpoints.write_atomic = write_atomic
"""


def test_kill_9_then_resume_ends_with_the_same_metrics(small, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    killed = killed_at(DIE_WRITING_THE_SECOND_CHECKPOINT, [*FAST, "--data", small, "--epochs", 3, "--out", out])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    from helpers.checkpoints import CheckpointError, load_checkpoint

    assert not (out / "metrics.json").exists()
    torn = list(out.glob(".checkpoint.npz.tmp-*"))
    assert len(torn) == 1  # it died writing epoch 2's checkpoint, whose torn start never replaced epoch 1's
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(torn[0], None)
    resumed = run(*FAST, "--data", small, "--epochs", 3, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stdout
    assert f"removed {torn[0]}, a partial write of a run that was killed" in resumed.stdout
    assert not torn[0].exists()
    a = json.loads((uninterrupted / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert b["greedy"] == a["greedy"] and b["beam"] == a["beam"] and b["novel_fraction"] == a["novel_fraction"]
    assert [h["loss"] for h in b["history"]] == [h["loss"] for h in a["history"]]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--patience", "0"], "--patience must be at least 1 epoch, got 0"),
        (["--encoder", "alexnet"], "unknown encoder 'alexnet'"),
        (["--data", "/nonexistent/flickr"], "--data /nonexistent/flickr is not a folder"),
        (["--resume"], "--resume: no checkpoint in"),
        (["--batch-size", "500"], "--batch-size 500 is larger than the"),
        (["--fine-tune", "2"], "--fine-tune is for --model show_tell with a keras.applications --encoder"),
        (["--fine-tune", "-1"], "--fine-tune must be 0 or more"),
        (
            ["--encoder", "resnet50", "--encoder-weights", "/nonexistent.weights.h5"],
            "is neither imagenet, none, nor a file",
        ),
    ],
)
def test_bad_arguments_give_one_line(small, tmp_path, args, message):
    base = [*FAST, "--out", tmp_path / "x", "--epochs", "1"]
    if "--data" not in args:
        base += ["--data", small]
    done = run(*base, *args)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert message in last and "Traceback" not in done.stderr


def test_a_finished_run_is_continued_or_replaced_only_when_asked(small, uninterrupted):
    before = {p.name: p.read_bytes() for p in uninterrupted.iterdir()}
    again = run(*FAST, "--data", small, "--epochs", 3, "--out", uninterrupted)  # no --resume, no --overwrite
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "already holds a run (checkpoint.npz, best_checkpoint.npz, config.json" in again.stderr
    assert "continue it with --resume or replace it with --overwrite" in again.stderr.strip().splitlines()[-1]
    assert "images" not in again.stdout  # refused before any data was read
    for changed, message in [
        (["--seed", "5"], "was trained with --seed 0, not 5"),
        (["--learning-rate", "0.01"], "was trained with --learning-rate 0.001, not 0.01"),
        (["--min-count", "2"], "was trained with --min-count 1, not 2"),
    ]:
        done = run(*FAST, "--data", small, "--epochs", 3, "--out", uninterrupted, "--resume", *changed)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert message in done.stderr.strip().splitlines()[-1] and "only --epochs may change" in done.stderr
    shorter = run(*FAST, "--data", small, "--epochs", 2, "--out", uninterrupted, "--resume")
    assert shorter.returncode == 2 and "Traceback" not in shorter.stderr
    assert "has trained 3 epochs, more than --epochs 2" in shorter.stderr.strip().splitlines()[-1]
    assert {p.name: p.read_bytes() for p in uninterrupted.iterdir()} == before  # nothing finished lost


def test_out_that_cannot_be_a_run_folder_fails_before_the_data(small, tmp_path):
    (tmp_path / "a_file").write_text("")
    for out, message in [
        (tmp_path / "a_file", "--out {} is a file, not a folder"),
        (tmp_path / "a_file" / "run", "--out {} cannot be created (Not a directory)"),
    ]:
        done = run(*FAST, "--data", small, "--epochs", 1, "--out", out)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1] == "error: " + message.format(out)
        assert "images" not in done.stdout


def test_an_unreadable_checkpoint_is_one_sentence_naming_it(small, uninterrupted, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(uninterrupted, out)
    for content in (b"", (out / "checkpoint.npz").read_bytes()[:1000]):  # empty, truncated
        (out / "checkpoint.npz").write_bytes(content)
        done = run(*FAST, "--data", small, "--epochs", 3, "--out", out, "--resume")
        assert done.returncode == 2 and "Traceback" not in done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {out / 'checkpoint.npz'} is unreadable")


CRNN = ["--model", "crnn", "--lines", "240", "--batch-size", "16", "--epochs", "3"]


@pytest.fixture(scope="module")
def crnn_run(tmp_path_factory):
    lines = tmp_path_factory.mktemp("lines")  # rendered once, shared by the runs below
    out = tmp_path_factory.mktemp("runs") / "crnn"
    done = run(*CRNN, "--data", lines, "--out", out)
    assert done.returncode == 0, done.stderr
    return lines, out, done


def test_crnn_writes_cer_and_word_accuracy(crnn_run):
    lines, out, done = crnn_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cer"] >= 0 and 0 <= metrics["word_accuracy"] <= 1
    assert set(metrics["prefix_beam"]) == {"beam_width", "cer", "word_accuracy"} and metrics["test_lines"] == 40
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3] and "val_cer" in metrics["history"][0]
    readings = json.loads((out / "readings.json").read_text())
    from helpers.metrics import cer

    assert cer([r["text"] for r in readings], [r["greedy"] for r in readings]) == metrics["cer"]
    assert "test CER greedy" in done.stdout and (out / "checkpoint.npz").is_file()


def test_a_crnn_run_loads_back_and_reads_the_same(crnn_run):
    from helpers.crnn import CHARSET, load_text_lines, read_text
    from helpers.training import load_trained

    lines, out, _ = crnn_run
    model, charset = load_trained(out)
    assert charset == CHARSET
    images, texts = load_text_lines(lines, sizes={"train": 240, "val": 20, "test": 40}, progress=False)["test"]
    saved = json.loads((out / "readings.json").read_text())
    assert [r["text"] for r in saved] == texts
    assert read_text(model, images) == [r["greedy"] for r in saved]


def test_crnn_kill_9_then_resume_ends_with_the_same_metrics(crnn_run, tmp_path):
    lines, uninterrupted, _ = crnn_run
    out = tmp_path / "killed"
    # the 20th step: 240 lines in batches of 16 are 15 steps an epoch, so in the middle of epoch 2
    mid_epoch_2 = """
        real = helpers.crnn.make_ctc_train_step
        def make_ctc_train_step(*args, **kwargs):
            step, calls = real(*args, **kwargs), []
            def counted(*batch):
                calls.append(1)
                if len(calls) == 20:
                    die()
                return step(*batch)
            return counted
        helpers.crnn.make_ctc_train_step = make_ctc_train_step
    """
    killed = killed_at(mid_epoch_2, [*CRNN, "--data", lines, "--out", out])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "metrics.json").exists()
    resumed = run(*CRNN, "--data", lines, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stdout
    a = json.loads((uninterrupted / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert (b["cer"], b["word_accuracy"], b["prefix_beam"]) == (a["cer"], a["word_accuracy"], a["prefix_beam"])
    assert [h["loss"] for h in b["history"]] == [h["loss"] for h in a["history"]]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--strategy", "mirrored"], "--strategy mirrored is for the captioners"),
        (["--encoder", "resnet50"], "--encoder applies to the captioners"),
        (["--batch-size", "500"], "--batch-size 500 is larger than the 240 training lines"),
        (["--lines", "0"], "--lines must be at least 1"),
    ],
)
def test_crnn_bad_arguments_give_one_line(crnn_run, tmp_path, args, message):
    lines, _, _ = crnn_run
    done = run(*CRNN, "--data", lines, "--out", tmp_path / "x", *args)
    assert done.returncode == 2
    assert message in done.stderr.strip().splitlines()[-1] and "Traceback" not in done.stderr


def test_attention_writes_grounding_and_loads_back(small, tmp_path):
    import numpy as np
    import tensorflow as tf

    from helpers.attention import ShowAttendTell
    from helpers.data import load_flickr30k, load_image
    from helpers.decoding import greedy_decode
    from helpers.training import load_trained

    out = tmp_path / "att"
    done = run(*FAST, "--model", "attention", "--data", small, "--epochs", 1, "--out", out)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["grounding"] <= 1 and 0 < metrics["grounding_uniform"] < 1
    assert 0 < metrics["grounding_random_object"] <= 1 and 0 <= metrics["attention_correctness"] <= 1
    assert "grounding" in done.stdout and "scene exact greedy" in done.stdout
    model, vocab = load_trained(out)
    assert isinstance(model, ShowAttendTell)
    test = load_flickr30k(small).query("split == 'test'").drop_duplicates("image")
    x = tf.constant(np.stack([load_image(p, size=(32, 32)) for p in test.path]))
    decoded = greedy_decode(model.step, model.initial_state(x), vocab.start_id, vocab.end_id, 20)
    saved = json.loads((out / "captions.json").read_text())["greedy"]
    assert [vocab.decode(o[0][0]) or "<empty>" for o in decoded] == [saved[n] for n in test.image]

    # validation's grounding comes from its loss's teacher-forced pass: it must be grounding_scores'
    from helpers.attention import grounding_scores
    from helpers.data import load_boxes

    captions = load_flickr30k(small)
    val = captions.query("split == 'val'").drop_duplicates("image")
    x = np.stack([load_image(p, size=(32, 32)) for p in val.path])
    sizes = {n: load_image(p).shape[:2] for n, p in zip(val.image, val.path)}
    again = grounding_scores(model, x, list(val.image), captions, vocab, load_boxes(small), sizes, max_len=20)
    assert metrics["history"][-1]["val_grounding"] == pytest.approx(again["grounding"], abs=1e-9)


def test_mirrored_strategy_trains(small, tmp_path):
    done = run(*FAST, "--data", small, "--epochs", 1, "--strategy", "mirrored", "--out", tmp_path / "m")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["epochs"] == 1


def test_a_saved_run_loads_back_and_captions_the_same(uninterrupted, small):
    import numpy as np
    import tensorflow as tf

    from helpers.data import load_flickr30k, load_image
    from helpers.decoding import greedy_decode
    from helpers.training import load_trained

    model, vocab = load_trained(uninterrupted)
    test = load_flickr30k(small).query("split == 'test'").drop_duplicates("image")
    x = tf.constant(np.stack([load_image(p, size=(32, 32)) for p in test.path]))
    out = greedy_decode(model.step, model.initial_state(x), vocab.start_id, vocab.end_id, 20)
    saved = json.loads((uninterrupted / "captions.json").read_text())["greedy"]
    assert [vocab.decode(o[0][0]) or "<empty>" for o in out] == [saved[n] for n in test.image]
    with pytest.raises(FileNotFoundError, match="no trained model in .*: config.json is missing"):
        load_trained(uninterrupted.parent / "nothing")


FINE_TUNE = [*FAST, "--encoder", "resnet50", "--encoder-weights", "none", "--fine-tune", "2"]


def test_fine_tuning_resumes_to_the_same_metrics_and_loads_back(small, tmp_path):
    import numpy as np
    import tensorflow as tf

    from helpers.data import load_flickr30k, load_image
    from helpers.decoding import greedy_decode
    from helpers.training import load_trained

    full, split = tmp_path / "full", tmp_path / "split"
    done = run(*FINE_TUNE, "--data", small, "--epochs", 2, "--out", full)
    assert done.returncode == 0, done.stderr
    assert "fine-tuning the top 2 weighted layers of resnet50: conv5_block3_2_conv, conv5_block3_3_conv" in done.stdout
    # two optimizers in the checkpoint (the encoder has its own): killed after one epoch, resumed for the second
    # (the same --epochs: the learning rate's cosine decay is laid out over the epochs asked for)
    killed = killed_at(DIE_WRITING_THE_SECOND_CHECKPOINT, [*FINE_TUNE, "--data", small, "--epochs", 2, "--out", split])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run(*FINE_TUNE, "--data", small, "--epochs", 2, "--out", split, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = (json.loads((out / "metrics.json").read_text()) for out in (full, split))
    assert b["greedy"] == a["greedy"] and [h["loss"] for h in b["history"]] == [h["loss"] for h in a["history"]]

    model, vocab = load_trained(full)  # the encoder's weights come from the checkpoint
    assert model.fine_tune == 2 and len(model.cnn.trainable_variables) == 4
    test = load_flickr30k(small).query("split == 'test'").drop_duplicates("image")
    x = tf.constant(np.stack([load_image(p, size=(32, 32)) for p in test.path]))
    out = greedy_decode(model.step, model.initial_state(x), vocab.start_id, vocab.end_id, 20)
    saved = json.loads((full / "captions.json").read_text())["greedy"]
    assert [vocab.decode(o[0][0]) or "<empty>" for o in out] == [saved[n] for n in test.image]


def test_a_run_on_cached_features_loads_back_and_captions_the_same(small, tmp_path, monkeypatch):
    import keras
    import numpy as np
    import tensorflow as tf

    from helpers.data import load_flickr30k
    from helpers.decoding import greedy_decode
    from helpers.features import build_encoder, extract_features
    from helpers.training import inputs_of_run, load_trained

    weights = tmp_path / "mobilenet.weights.h5"  # a weights file stands in for the ImageNet download
    keras.applications.MobileNetV3Small(input_shape=(224, 224, 3), weights=None, include_top=False).save_weights(
        weights
    )
    monkeypatch.setenv("COURSE_FEATURE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "features"
    done = run(
        *FAST,
        "--encoder",
        "mobilenet_v3_small",
        "--encoder-weights",
        weights,
        "--data",
        small,
        "--epochs",
        1,
        "--out",
        out,
    )
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "cache").glob("mobilenet_v3_small-224px-pooled-*/*.npy"))  # cached where it was told

    model, vocab = load_trained(out)
    assert model.cnn is None  # it takes the 576-d features, not pixels
    test = load_flickr30k(small).query("split == 'test'").drop_duplicates("image")
    features = extract_features(
        build_encoder("mobilenet_v3_small", weights=str(weights)), test.path, cache_dir=None, progress=False
    )
    decoded = greedy_decode(model.step, model.initial_state(tf.constant(features)), vocab.start_id, vocab.end_id, 20)
    saved = json.loads((out / "captions.json").read_text())["greedy"]
    assert [vocab.decode(o[0][0]) or "<empty>" for o in decoded] == [saved[n] for n in test.image]
    # what notebook 05 decodes from: the run's own encoder, its features read back from the cache
    shards = sorted((tmp_path / "cache").rglob("*.npy"))
    again = inputs_of_run(out, test.path, progress=False)
    assert sorted((tmp_path / "cache").rglob("*.npy")) == shards and again.dtype == np.float32
    np.testing.assert_allclose(again, features, rtol=1e-5, atol=1e-6)
