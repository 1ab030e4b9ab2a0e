"""The embedded dataset: layout, determinism, atomic writing, and captions that tell the truth."""

import json
import re

import numpy as np
import pytest

from helpers import data, mini_flickr
from helpers.text import Vocabulary, tokenize


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_loads_through_the_real_loader(mini_root):
    assert {p.name for p in mini_root.iterdir()} >= {
        "flickr30k_images",
        "results.csv",
        "dataset_flickr30k.json",
        "boxes.json",
        "scenes.json",
        "mini_flickr.json",
    }
    df = data.load_flickr30k(mini_root)
    assert len(df) == 600 and df.image.nunique() == 120
    assert df.groupby("image").split.first().value_counts().to_dict() == {"train": 102, "val": 9, "test": 9}
    image = data.load_image(df.path[0])
    assert image.shape == (96, 96, 3) and image.std() > 10
    # results.csv (Kaggle's format) says the same as the Karpathy JSON
    rows = (mini_root / "results.csv").read_text().splitlines()
    assert rows[0] == "image_name| comment_number| comment"
    assert rows[1] == f"{df.image[0]}| 0| {df.caption[0]}"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = _files(mini_flickr.make_mini_flickr(tmp_path / "a", n_images=25, seed=7))
    b = _files(mini_flickr.make_mini_flickr(tmp_path / "b", n_images=25, seed=7))
    c = _files(mini_flickr.make_mini_flickr(tmp_path / "c", n_images=25, seed=8))
    assert a == b
    assert a.keys() == c.keys() and a["results.csv"] != c["results.csv"]


def test_five_different_captions_and_a_rich_grammar(tmp_path):
    root = mini_flickr.make_mini_flickr(tmp_path / "m", n_images=400, seed=0)
    df = data.load_flickr30k(root)
    per_image = df.groupby("image").caption.agg(list)
    assert all(len(set(c)) == 5 for c in per_image)
    assert len(Vocabulary(df.caption)) - 4 >= 50
    drawn = json.loads((root / "scenes.json").read_text())["scenes"].values()
    objects = [o for s in drawn for o in s["objects"]]
    assert len({o["kind"] for o in objects}) >= 6 and len({o["colour"] for o in objects}) >= 6
    assert {o["size"] for o in objects} == {"small", "large"}
    assert {len(s["objects"]) for s in drawn} == {1, 2, 3}
    assert len({s["background"] for s in drawn}) == 4
    # mostly left to right, but not always
    boxes = json.loads((root / "boxes.json").read_text())
    scenes = json.loads((root / "scenes.json").read_text())["scenes"]
    in_order = []
    for name, caps in per_image.items():
        if scenes[name]["axis"] == "row" and len(scenes[name]["objects"]) > 1:
            for cap in caps:
                lefts = [box[0] for box in _noun_positions(cap, boxes[name])[1]]
                in_order.append(lefts == sorted(lefts))
    assert 0.7 < np.mean(in_order) < 0.97
    frames = df.caption.str.extract(r"^(There is|A picture of|An image of|A drawing of)")[0].notna().mean()
    assert 0.1 < frames < 0.4


def _noun_positions(caption, boxes):
    words = tokenize(caption)
    found = []
    for entry in boxes:
        if entry["word"] in words:
            found.append((words.index(entry["word"]), entry["box"]))
    return words, [box for _, box in sorted(found)]


def test_boxes_and_relations_match_the_pictures(mini_root):
    boxes = json.loads((mini_root / "boxes.json").read_text())
    df = data.load_flickr30k(mini_root)
    checked = 0
    for name, caps in df.groupby("image").caption:
        entries = boxes[name]
        for e in entries:
            x0, y0, x1, y1 = e["box"]
            assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
        for cap in caps:
            words, ordered = _noun_positions(cap, entries)
            nouns = {e["word"] for e in entries}
            assert nouns & set(words), (name, cap)
            if len(ordered) < 2:
                continue
            text = " ".join(words)
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = ordered[0], ordered[1]
            # the relation after the first object phrase is about the first two objects named
            if re.search(r"\b(to the left of|left of)\b", text) and "three" not in text:
                assert ax1 <= bx0, (name, cap)
                checked += 1
            elif re.search(r"\b(to the right of|right of)\b", text):
                assert bx1 <= ax0, (name, cap)
                checked += 1
            elif re.search(r"\b(above|over|on top of)\b", text):
                assert ay1 <= by0, (name, cap)
                checked += 1
            elif re.search(r"\b(below|under|beneath)\b", text):
                assert by1 <= ay0, (name, cap)
                checked += 1
    assert checked > 100


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    root = tmp_path / "mini"
    real_draw = mini_flickr._draw_scene
    calls = []

    def dying(rng):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return real_draw(rng)

    monkeypatch.setattr(mini_flickr, "_draw_scene", dying)
    with pytest.raises(KeyboardInterrupt):
        mini_flickr.make_mini_flickr(root, n_images=20)
    assert not root.exists()
    monkeypatch.setattr(mini_flickr, "_draw_scene", real_draw)
    mini_flickr.make_mini_flickr(root, n_images=20)  # cleans up the dead run's folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]
    before = _files(root)

    # a crash while replacing it with other arguments keeps the complete old one
    calls.clear()
    monkeypatch.setattr(mini_flickr, "_draw_scene", dying)
    with pytest.raises(KeyboardInterrupt):
        mini_flickr.make_mini_flickr(root, n_images=30)
    assert _files(root) == before


def test_reuses_a_complete_dataset(tmp_path):
    root = mini_flickr.make_mini_flickr(tmp_path / "m", n_images=10)
    stamp = (root / "results.csv").stat().st_mtime_ns
    assert mini_flickr.make_mini_flickr(tmp_path / "m", n_images=10) == root
    assert (root / "results.csv").stat().st_mtime_ns == stamp
    mini_flickr.make_mini_flickr(tmp_path / "m", n_images=12)
    assert len(list((root / "flickr30k_images").iterdir())) == 12
    with pytest.raises(ValueError, match="n_images must be at least 1"):
        mini_flickr.make_mini_flickr(tmp_path / "z", n_images=0)


def test_human_agreement_is_high_for_the_same_scene_and_low_for_another(tmp_path):
    from helpers.data import human_agreement_of, load_flickr30k
    from helpers.metrics import human_agreement

    root = mini_flickr.make_mini_flickr(tmp_path / "m", n_images=800, seed=0)
    agreement = human_agreement_of(load_flickr30k(root))
    assert agreement["bleu4"] > 0.6 and agreement["bleu1"] > agreement["bleu4"]
    # the same captions, each image's references moved to its neighbour: the scene no longer matches
    test = [e for e in json.loads((root / "dataset_flickr30k.json").read_text())["images"] if e["split"] == "test"]
    refs = [[s["raw"] for s in e["sentences"]] for e in test]
    shifted = {i: [refs[i][0], *refs[i - 1][1:]] for i in range(len(refs))}
    assert human_agreement(shifted, rounds=1)["bleu4"] < agreement["bleu4"] - 0.2


def test_every_human_caption_is_right_about_its_scene(tmp_path):
    # the parser read against the grammar that wrote the captions: all 5 x 300 must be right
    root = mini_flickr.make_mini_flickr(tmp_path / "m", n_images=300, seed=2)
    scenes = mini_flickr.load_scenes(root)
    entries = json.loads((root / "dataset_flickr30k.json").read_text())["images"]
    for k in range(5):
        captions = {e["filename"]: e["sentences"][k]["raw"] for e in entries}
        scores = mini_flickr.scene_scores(captions, scenes)
        assert scores["exact"] == scores["object_precision"] == scores["object_recall"] == scores["relation"] == 1.0
        assert set(scores["by_objects"]) == {"1", "2", "3"}
    # the same captions under the wrong scenes: mostly wrong
    names = [e["filename"] for e in entries]
    shifted = {names[i]: entries[i - 1]["sentences"][0]["raw"] for i in range(len(names))}
    wrong = mini_flickr.scene_scores(shifted, scenes)
    assert wrong["exact"] < 0.1 and wrong["object_recall"] < 0.2 and wrong["relation"] < 0.6


def test_scene_scores_on_captions_written_by_hand():
    scene = {
        "axis": "row",
        "objects": [
            {"kind": "square", "colour": "purple", "centre": [70.0, 40.0]},
            {"kind": "star", "colour": "red", "centre": [20.0, 40.0]},
        ],
    }
    scenes = {"a.jpg": scene}

    def score(caption):
        return mini_flickr.scene_scores({"a.jpg": caption}, scenes)

    right = score("A little violet box to the right of a tiny red star.")  # synonyms map to the scene's names
    assert right["exact"] == right["relation"] == right["object_precision"] == 1.0
    assert mini_flickr.parse_caption("A little violet box to the right of a tiny red star.") == (
        [("purple", "square"), ("red", "star")],
        "right",
    )
    assert score("A red star left of a purple square.")["relation"] == 1.0
    assert score("A red star right of a purple square.")["relation"] == 0.0  # the stated relation is false
    assert score("A red star beside a purple square.")["relation"] == 1.0  # side by side, in a row
    assert score("A red star and a purple square.")["relation"] is None  # no relation stated
    wrong_shape = score("A red cross to the left of a purple square.")
    assert (
        wrong_shape["exact"] == 0.0 and wrong_shape["object_precision"] == 0.5 and wrong_shape["object_recall"] == 0.5
    )
    assert wrong_shape["relation"] == 0.0  # a relation between objects that are not both there
    extra = score("A red star, a purple square and a red star.")
    assert extra["exact"] == 0.0 and extra["object_precision"] == pytest.approx(2 / 3) and extra["object_recall"] == 1.0
    assert score("A small red.")["object_recall"] == 0.0  # a colour without a shape names nothing
