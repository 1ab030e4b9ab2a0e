"""The course on real-format data, end to end: a Flickr30k-layout stand-in (real captions, drawn
images under their real file names) and a Flickr8k layout made by ``prepare`` from zips built
here go through ``verify``, the command line with a keras.applications encoder (untrained
weights: the real architecture and the feature cache, no download) and notebooks 04, 05 and 06
under papermill, with the parameters an instructor would set."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from helpers import PROJECT_ROOT
from helpers.data import SHIPPED_CAPTIONS, load_flickr30k, verify
from helpers.mini_flickr import write_stand_in_images

pytestmark = pytest.mark.slow
SIZES = {"train": 200, "val": 25, "test": 25}  # a few hundred images
NOTEBOOKS = PROJECT_ROOT / "notebooks"


def pick(lines, names):
    wanted = set(names)
    return [line for line in lines if line.split("#", 1)[0] in wanted]


@pytest.fixture(scope="module")
def flickr30k_layout(tmp_path_factory, shared_data_path):
    """Real Flickr30k captions in the official .token format, with the Karpathy split (from
    ../shared/data when it is there, else the course's shipped test captions and split lists
    of their own beside the token file)."""
    root = tmp_path_factory.mktemp("real") / "flickr30k"
    root.mkdir()
    token = shared_data_path / "flickr30k" / "captions_karpathy.token"
    if token.is_file():  # the loader takes the split from the Karpathy lists the course ships
        lists = shared_data_path / "flickr30k" / "karpathy_split"
        chosen = {s: (lists / f"{s}_images.txt").read_text().split()[:n] for s, n in SIZES.items()}
        lines = token.read_text(encoding="utf-8").splitlines()
    else:  # the 1,000 shipped test images, split here (Flickr30k Entities' list format: ids)
        lines = SHIPPED_CAPTIONS.read_text(encoding="utf-8").splitlines()
        names = list(dict.fromkeys(line.split("#", 1)[0] for line in lines))
        chosen, start = {}, 0
        for split, n in SIZES.items():
            chosen[split], start = names[start : start + n], start + n
            (root / f"{split}.txt").write_text("".join(n[: -len(".jpg")] + "\n" for n in chosen[split]))
    names = [n for split in SIZES for n in chosen[split]]
    (root / "results_20130124.token").write_text("\n".join(pick(lines, names)) + "\n", encoding="utf-8")
    write_stand_in_images(root / "flickr30k_images", names)
    return root, chosen


@pytest.fixture(scope="module")
def flickr8k_layout(tmp_path_factory, shared_data_path):
    """Flickr8k's two zips as distributed (Flicker8k_Dataset/, __MACOSX/ entries, the text
    files at the top), laid out by ``python -m helpers.data prepare``."""
    source = shared_data_path / "flickr8k"
    if not (source / "Flickr8k.token.txt").is_file():
        pytest.skip(f"real Flickr8k captions not found in {source}")
    work = tmp_path_factory.mktemp("f8k")
    files = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}
    chosen = {s: (source / f).read_text().split()[: SIZES[s]] for s, f in files.items()}
    names = [n for s in SIZES for n in chosen[s]]
    images = write_stand_in_images(work / "images", names)
    with zipfile.ZipFile(work / "Flickr8k_Dataset.zip", "w") as z:
        for n in names:
            z.write(images / n, f"Flicker8k_Dataset/{n}")
            z.writestr(f"__MACOSX/Flicker8k_Dataset/._{n}", b"\x00\x05\x16\x07")
    lines = (source / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    with zipfile.ZipFile(work / "Flickr8k_text.zip", "w") as z:
        z.writestr("Flickr8k.token.txt", "\n".join(pick(lines, names)) + "\n")
        for split, f in files.items():
            z.writestr(f, "\n".join(chosen[split]) + "\n")
    root = work / "flickr8k"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers.data",
            "prepare",
            work / "Flickr8k_Dataset.zip",
            work / "Flickr8k_text.zip",
            "--dest",
            root,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Looks like flickr8k" in done.stdout and f"Ready: {root}" in done.stdout
    return root, chosen


def run_notebook(name, out_dir, **parameters):
    """Execute notebook ``name`` with papermill (the course's engine) and return it."""
    import nbformat
    import papermill

    out = out_dir / name
    papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(out),
        parameters=parameters,
        engine_name="course",
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        kernel_name="python3",
        execution_timeout=900,
    )
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]
    return nb


def printed(nb):
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


def test_flickr30k_layout_verifies_with_its_real_split(flickr30k_layout):
    root, chosen = flickr30k_layout
    import io

    report = io.StringIO()
    found = verify(root, out=report)
    assert found["images_on_disk"] == sum(SIZES.values()) and not found["captions_without_images"]
    df = load_flickr30k(root)
    assert len(df) == 5 * sum(SIZES.values())
    assert {s: sorted(df[df.split == s].image.unique()) for s in SIZES} == {s: sorted(n) for s, n in chosen.items()}


def train_on_mobilenet(model, root, out, cache):
    """``python -m helpers.train`` for one epoch on an untrained MobileNetV3Small's cached features."""
    return subprocess.run(
        [sys.executable, "-m", "helpers.train", "--model", model, "--data", root, "--encoder", "mobilenet_v3_small"]
        + ["--encoder-weights", "none", "--epochs", "1", "--batch-size", "16", "--out", out],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), COURSE_FEATURE_CACHE=str(cache)),
        timeout=600,
        cwd=PROJECT_ROOT,
    )


def test_the_command_line_trains_on_a_pretrained_architectures_cached_features(
    flickr30k_layout, tmp_path, feature_cache
):
    root, _ = flickr30k_layout
    out = tmp_path / "run"
    done = train_on_mobilenet("show_tell", root, out, feature_cache)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    agreement = metrics["human_agreement"]
    assert (
        set(agreement) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider"} and 0 < agreement["bleu4"] < agreement["bleu1"]
    )
    assert list(feature_cache.glob("mobilenet_v3_small-224px-pooled-*/*.npy"))


def test_notebooks_04_05_06_run_on_flickr30k_layout_with_a_pretrained_encoder(
    flickr30k_layout, tmp_path, feature_cache, monkeypatch
):
    root, _ = flickr30k_layout
    monkeypatch.setenv("COURSE_FEATURE_CACHE", str(feature_cache))
    show_tell, attention = tmp_path / "show_tell", tmp_path / "attention"
    common = {"DATA": str(root), "ENCODER": "mobilenet_v3_small", "ENCODER_WEIGHTS": "none", "EPOCHS": 1}
    nb04 = run_notebook("04_cnn_lstm_captioner_flickr30k.ipynb", tmp_path, **common, RUN_DIR=str(show_tell))
    metrics = json.loads((show_tell / "metrics.json").read_text())
    assert json.loads((show_tell / "config.json").read_text())["input_shape"] == [576]  # pooled features, not pixels
    assert "human agreement" in printed(nb04) and metrics["human_agreement"]["bleu4"] > 0

    nb05 = run_notebook("05_greedy_vs_beam_search.ipynb", tmp_path, DATA=str(root), RUN_DIR=str(show_tell))
    assert f"{SIZES['test']} test images" in printed(nb05) and "same captions, same order: True" in printed(nb05)

    nb06 = run_notebook(
        "06_attention_visualisation.ipynb", tmp_path, **common, RUN_DIR=str(attention), SHOW_TELL_DIR=str(show_tell)
    )
    assert json.loads((attention / "config.json").read_text())["input_shape"] == [7, 7, 576]  # the encoder's grid
    text = printed(nb06)
    assert "no object boxes" in text and "human agreement" in text and "Show and Tell, greedy" in text
    assert "grounding" not in json.loads((attention / "metrics.json").read_text())


def test_notebooks_04_05_06_run_on_a_prepared_flickr8k(flickr8k_layout, tmp_path):
    root, _ = flickr8k_layout
    show_tell = tmp_path / "show_tell"
    run_notebook("04_cnn_lstm_captioner_flickr30k.ipynb", tmp_path, DATA=str(root), EPOCHS=1, RUN_DIR=str(show_tell))
    assert json.loads((show_tell / "metrics.json").read_text())["human_agreement"]["cider"] > 0
    nb05 = run_notebook("05_greedy_vs_beam_search.ipynb", tmp_path, DATA=str(root), RUN_DIR=str(show_tell))
    assert "Reusing the model" in printed(nb05)
    run_notebook(
        "06_attention_visualisation.ipynb",
        tmp_path,
        DATA=str(root),
        EPOCHS=1,
        RUN_DIR=str(tmp_path / "attention"),
        SHOW_TELL_DIR=str(show_tell),
    )
    assert json.loads((tmp_path / "attention" / "metrics.json").read_text())["epochs"] == 1


NOUNS = ("man", "woman", "men", "women", "people", "dog", "boy", "girl", "shirt", "child", "group", "person")


def test_the_attention_command_line_grounds_on_flickr30k_entities(flickr30k_layout, tmp_path):
    """Entities-format boxes (Annotations/*.xml, Sentences/*.txt) beside the real captions, the
    test images in two sizes: grounding is reported, its uniform baseline from each image's own size."""
    import numpy as np

    from helpers.data import load_boxes
    from helpers.text import Vocabulary, encode_captions

    source, chosen = flickr30k_layout
    root = tmp_path / "flickr30k"
    (root / "flickr30k_images").mkdir(parents=True)
    (root / "results_20130124.token").write_bytes((source / "results_20130124.token").read_bytes())
    for name in (source / "flickr30k_images").iterdir():
        (root / "flickr30k_images" / name.name).write_bytes(name.read_bytes())
    write_stand_in_images(root / "flickr30k_images", chosen["test"][::2], size=(240, 180))  # other sizes
    for f in source.glob("*.txt"):
        (root / f.name).write_bytes(f.read_bytes())
    (root / "Annotations").mkdir()
    (root / "Sentences").mkdir()
    df = load_flickr30k(root)
    rng = np.random.default_rng(0)
    for image, captions in df.groupby("image").caption:
        height, width = (240, 180) if image in chosen["test"][::2] else (120, 160)
        x0, y0 = rng.integers(1, width // 2), rng.integers(1, height // 2)
        x1, y1 = rng.integers(x0 + 10, width), rng.integers(y0 + 10, height)
        lines = []
        for caption in captions:
            words = caption.split()
            hit = next((i for i, w in enumerate(words) if w.lower() in NOUNS), None)
            if hit is not None:
                words[hit] = f"[/EN#1/people {words[hit]}]"
            lines.append(" ".join(words))
        xml = (
            f"<annotation><filename>{image}</filename><size><width>{width}</width><height>{height}</height></size>"
            f"<object><name>1</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
            "</bndbox></object></annotation>"
        )
        (root / "Annotations" / image.replace(".jpg", ".xml")).write_text(xml)
        (root / "Sentences" / image.replace(".jpg", ".txt")).write_text("\n".join(lines) + "\n")
    boxes = load_boxes(root)
    assert boxes and set(boxes) <= set(df.image)

    out = tmp_path / "attention"
    done = train_on_mobilenet("attention", root, out, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert "random object" in done.stdout
    assert 0 <= metrics["grounding"] <= 1 and 0 <= metrics["attention_correctness"] <= 1
    # every boxed word of every test reference, its box's share of its own image
    vocab = Vocabulary(df[df.split == "train"].caption, min_count=5)
    shares = []
    for image, captions in df[df.split == "test"].groupby("image", sort=False).caption:
        height, width = (240, 180) if image in chosen["test"][::2] else (120, 160)
        area = {b["word"]: (b["box"][2] - b["box"][0]) * (b["box"][3] - b["box"][1]) for b in boxes.get(image, [])}
        for ids in encode_captions(vocab, captions, 30):
            shares += [area[w] / (height * width) for w in map(vocab.id_to_token.__getitem__, ids[1:]) if w in area]
    assert metrics["grounding_uniform"] == pytest.approx(np.mean(shares), rel=1e-6)
    assert metrics["grounding_random_object"] == 1.0  # one object per image
