"""helpers.data.load_flickr30k on the three annotation formats, their defects and bad input."""

import json
import os
import signal
import warnings

import pandas as pd
import pytest

from helpers import data
from helpers.data import AnnotationError, AnnotationWarning, load_flickr30k

CLEAN = [
    ("1000092795.jpg", 0, "Two young guys with shaggy hair look at their hands while hanging out in the yard ."),
    ("1000092795.jpg", 1, "Two young , White males are outside near many bushes ."),
    ("10002456.jpg", 0, "Several men in hard hats are operating a giant pulley system ."),
    ("10002456.jpg", 1, "Workers look down from up above on a piece of equipment ."),
    ("1007129816.jpg", 0, "The man with pierced ears is wearing glasses and an orange hat ."),
]


def make_root(tmp_path, name="results_20130124.token", text=None, raw=None, images="flickr30k_images"):
    root = tmp_path / "ds"
    (root / images).mkdir(parents=True)
    path = root / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(text, encoding="utf-8")
    return root


def token_text(rows=CLEAN):
    return "".join(f"{img}#{k}\t{cap}\n" for img, k, cap in rows)


def csv_text(rows=CLEAN):
    return "image_name| comment_number| comment\n" + "".join(f"{img}| {k}| {cap}\n" for img, k, cap in rows)


def karpathy(rows=CLEAN, split="train"):
    images = {}
    for img, _, cap in rows:
        images.setdefault(img, []).append({"raw": cap, "tokens": cap.lower().split()})
    return {"images": [{"filename": n, "split": split, "sentences": s} for n, s in images.items()]}


def loaded(root, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_flickr30k(root, **kw)
    return df, [w for w in caught if issubclass(w.category, AnnotationWarning)]


# ----------------------------------------------------------------------------- the formats


@pytest.mark.parametrize("name,text", [("results_20130124.token", token_text()), ("results.csv", csv_text())])
def test_token_and_csv_give_the_same_table(tmp_path, name, text):
    df, warned = loaded(make_root(tmp_path, name, text))
    assert warned == []
    assert list(df.columns) == ["image", "caption_id", "caption", "split", "path"]
    assert list(zip(df.image, df.caption_id, df.caption)) == CLEAN
    assert df.caption_id.dtype.kind == "i"
    assert df.path[0].endswith("flickr30k_images/1000092795.jpg")


def test_karpathy_json_gives_captions_and_split(tmp_path):
    obj = karpathy()
    obj["images"][1]["split"] = "test"
    obj["images"][2]["split"] = "restval"  # COCO's extra training split
    df, _ = loaded(make_root(tmp_path, "dataset_flickr30k.json", json.dumps(obj)))
    assert list(zip(df.image, df.caption_id, df.caption)) == CLEAN
    assert df.groupby("image").split.first().to_dict() == {
        "1000092795.jpg": "train",
        "10002456.jpg": "test",
        "1007129816.jpg": "train",
    }


def test_json_is_preferred_over_token_and_csv(tmp_path):
    root = make_root(tmp_path, "results.csv", csv_text(CLEAN[:1]))
    (root / "results_20130124.token").write_text(token_text(CLEAN[:2]))
    assert len(load_flickr30k(root)) == 2
    (root / "dataset_flickr30k.json").write_text(json.dumps(karpathy(CLEAN[:3])))
    assert len(load_flickr30k(root)) == 3


def test_kaggle_layout_with_nested_images_folder(tmp_path):
    root = tmp_path / "kaggle"
    (root / "flickr30k_images" / "flickr30k_images").mkdir(parents=True)
    (root / "flickr30k_images" / "results.csv").write_text(csv_text())
    df = load_flickr30k(root)
    assert len(df) == 5
    assert df.path[0].endswith("flickr30k_images/flickr30k_images/1000092795.jpg")


def test_images_directly_in_root(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    (root / "1000092795.jpg").write_bytes(b"x")
    (root / "results_20130124.token").write_text(token_text())
    assert load_flickr30k(root).path[0] == str(root / "1000092795.jpg")


# ----------------------------------------------------------------------------- defects that are repaired


def test_bom_and_crlf_are_repaired_with_one_warning_each(tmp_path):
    raw = b"\xef\xbb\xbf" + token_text().replace("\n", "\r\n").encode()
    df, warned = loaded(make_root(tmp_path, raw=raw))
    assert list(zip(df.image, df.caption_id, df.caption)) == CLEAN
    bom, crlf = (str(w.message) for w in warned)
    assert "byte-order mark" in bom and "results_20130124.token, line 1:" in bom
    assert "CRLF" in crlf and "line 1 (and 4 more lines)" in crlf


def test_stray_spaces_around_separators(tmp_path):
    lines = token_text().splitlines()
    lines[2] = lines[2].replace("#0\t", " # 0 \t ")
    lines[3] = "  " + lines[3].replace("\t", " ")  # a space where the tab should be
    df, warned = loaded(make_root(tmp_path, text="\n".join(lines) + "\n"))
    assert list(zip(df.image, df.caption_id, df.caption)) == CLEAN
    assert len(warned) == 1 and "line 3 (and 1 more line)" in str(warned[0].message)


def test_comment_number_run_into_text_in_results_csv(tmp_path):
    text = csv_text().replace("10002456.jpg| 1| Workers", "10002456.jpg| 1   Workers")  # Kaggle's line 19999
    df, warned = loaded(make_root(tmp_path, "results.csv", text))
    assert list(zip(df.image, df.caption_id, df.caption)) == CLEAN
    assert len(warned) == 1 and "results.csv, line 5" in str(warned[0].message)


def test_html_entity_is_unescaped(tmp_path):
    rows = [("1.jpg", 0, "Cooking &amp; talking ."), ("1.jpg", 1, "A sign reads &quot;Ice Cream&quot; .")]
    df, warned = loaded(make_root(tmp_path, text=token_text(rows)))
    assert df.caption.tolist() == ["Cooking & talking .", 'A sign reads "Ice Cream" .']
    assert len(warned) == 1 and "line 1 (and 1 more line)" in str(warned[0].message)


def test_flickr8k_jpg_dot_one_quirk(tmp_path):
    text = "2258277193_586949ec62.jpg.1#0\tpeople waiting for the subway\n"
    df, warned = loaded(make_root(tmp_path, "Flickr8k.token.txt", text, images="Flicker8k_Dataset"))
    assert df.image.tolist() == ["2258277193_586949ec62.jpg"]
    assert len(warned) == 1 and "'2258277193_586949ec62.jpg.1'" in str(warned[0].message)


# ----------------------------------------------------------------------------- bad input: one clear sentence


@pytest.mark.parametrize(
    "name,text,where,what",
    [
        (
            "results_20130124.token",
            token_text() + "no separator here\n",
            "line 6",
            "expected 'IMAGE.jpg#N<TAB>caption'",
        ),
        ("results_20130124.token", token_text() + "1.jpg#0\t   \n", "line 6", "empty caption for 1.jpg#0"),
        ("results_20130124.token", "notes.txt#0\ta caption\n", "line 1", "'notes.txt' is not an image file name"),
        (
            "results_20130124.token",
            token_text() + token_text()[:60] + "\n",
            "lines 1, 6",
            "caption 0 of 1000092795.jpg appears more than once",
        ),
        ("results.csv", csv_text() + "1.jpg| two| a caption\n", "line 7", "comment_number 'two' is not a whole number"),
        ("results.csv", csv_text() + "1.jpg a caption\n", "line 7", "expected 'image_name| comment_number| comment'"),
        ("results.csv", "name| id| text\n" + csv_text()[36:], "line 1", "expected the header"),
        ("results.csv", csv_text() + "1.jpg| 0| \n", "line 7", "empty caption"),
        ("dataset_flickr30k.json", '{"images": [\n{"filename": "1.jpg",\n}]}', "line 3", "not valid JSON"),
        ("dataset_flickr30k.json", '{"imgs": []}', "", "expected a JSON object with an 'images' list"),
        ("dataset_flickr30k.json", json.dumps({"images": [{"filename": "1.jpg"}]}), "image 0", "'sentences' list"),
        ("dataset_flickr30k.json", json.dumps(karpathy(split="dev")), "image 0", "split 'dev' is not"),
        (
            "dataset_flickr30k.json",
            json.dumps({"images": [{"filename": "1.jpg", "split": "test", "sentences": [{"raw": " "}]}]}),
            "image 0",
            "empty caption for 1.jpg, sentence 0",
        ),
        ("results_20130124.token", token_text() + "1.jpg#0\t. , !\n", "line 6", "'. , !', has no word"),
        (
            "results.csv",
            csv_text() + "1.jpg| 0| ...\n",
            "line 7",
            "the caption for 1.jpg, comment 0, '...', has no word",
        ),
        ("results.csv", csv_text() + "1.jpg| 0| a dog| runs\n", "line 7", "4 fields separated by '|', expected 3"),
        (
            "dataset_flickr30k.json",
            json.dumps(
                {
                    "images": [karpathy(CLEAN[:2])["images"][0], karpathy(CLEAN[2:3])["images"][0]]
                    + [{**karpathy(CLEAN[:1], split="test")["images"][0]}]
                }
            ),
            "images 0 and 2",
            "1000092795.jpg is listed twice",  # once in train, once in test: a split leak
        ),
        ("dataset_flickr30k.json", "[" * 100_000 + "]" * 100_000, "", "nested too deeply"),
    ],
)
def test_malformed_annotations_name_file_and_line(tmp_path, name, text, where, what):
    with pytest.raises(AnnotationError) as err:
        load_flickr30k(make_root(tmp_path, name, text))
    message = str(err.value)
    assert name in message and where in message and what in message
    assert "\n" not in message
    assert isinstance(err.value, ValueError)


def test_invalid_utf8_names_the_line(tmp_path):
    raw = token_text().encode() + b"1.jpg#0\tcaf\xe9 latte\n"
    with pytest.raises(AnnotationError, match=r"results_20130124.token, line 6: not valid UTF-8"):
        load_flickr30k(make_root(tmp_path, raw=raw))


def test_invalid_utf8_json_names_the_file_and_line(tmp_path):
    raw = json.dumps(karpathy()).encode()[:-2] + b', "note": "caf\xe9"}'
    with pytest.raises(AnnotationError, match=r"dataset_flickr30k.json, line 1: not valid UTF-8"):
        load_flickr30k(make_root(tmp_path, "dataset_flickr30k.json", raw=raw))


@pytest.mark.parametrize("kind", ["folder", "link loop", "fifo"])
def test_an_annotation_path_that_is_no_file_is_one_sentence(tmp_path, kind):
    root = make_root(tmp_path, "results.csv", csv_text())
    path = root / "dataset_flickr30k.json"  # found first, so it is the one read
    if kind == "folder":
        path.mkdir()
    elif kind == "link loop":
        path.symlink_to(path)
    else:
        os.mkfifo(path)  # reading it would wait forever

    def hung(*_):
        raise TimeoutError(f"{path} was opened and waited on")

    previous = signal.signal(signal.SIGALRM, hung)  # a regression fails here instead of hanging the suite
    signal.alarm(60)
    try:
        with pytest.raises(AnnotationError) as err:
            load_flickr30k(root)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert {"folder": "is a folder", "link loop": "symbolic links", "fifo": "not a regular file"}[kind] in message


def test_split_list_and_box_file_errors_name_the_file(tmp_path):
    root = make_root(tmp_path, "results.csv", csv_text())
    for split in ("train", "val", "test"):
        (root / f"{split}.txt").write_text("1000092795\n")
    (root / "val.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(AnnotationError, match=r"val.txt, line 1: not valid UTF-8"):
        load_flickr30k(root)
    (root / "boxes.json").mkdir()
    with pytest.raises(AnnotationError, match=r"box file .*boxes.json is a folder"):
        data.load_boxes(root)


@pytest.mark.parametrize(
    "images,names,expected",
    [
        ("flickr30k_images", ["1000092795.jpg", "10002456.jpg"], "dataset_flickr30k.json"),
        ("Images", ["1000268201_693b08cb0e.jpg", "1001773457_577c3a7d70.jpg"], "dataset_flickr8k.json"),
        ("Flicker8k_Dataset", ["1.jpg"], "dataset_flickr8k.json"),
    ],
)
def test_karpathy_zip_unpacked_picks_the_file_of_the_images_at_hand(tmp_path, capsys, images, names, expected):
    root = tmp_path / "ds"
    (root / images).mkdir(parents=True)
    for name in names:
        (root / images / name).write_bytes(b"")
    for dataset in ("coco", "flickr30k", "flickr8k"):  # caption_datasets.zip: coco first, alphabetically
        rows = [(n, 0, f"a photo from {dataset}") for n in names]
        (root / f"dataset_{dataset}.json").write_text(json.dumps(karpathy(rows)))
    df = load_flickr30k(root)
    assert df.attrs["annotations"].endswith(expected)
    assert set(df.caption) == {f"a photo from {expected[8:-5]}"}
    assert f"Captions from {root / expected}" in capsys.readouterr().out  # says which, and why
    (root / expected).unlink()
    with pytest.raises(AnnotationError, match=rf"several Karpathy files .* none is {expected}"):
        load_flickr30k(root)


def test_missing_images_folder_or_annotations(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "results.csv").write_text(csv_text())
    with pytest.raises(FileNotFoundError, match=r"no images folder in .*empty: looked for flickr30k_images/"):
        load_flickr30k(root)
    (root / "results.csv").unlink()
    (root / "flickr30k_images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no caption file in .*empty.*dataset_\*\.json.*results\.csv"):
        load_flickr30k(root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_flickr30k(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- splits


def test_split_lists_beside_annotations_win(tmp_path):
    root = make_root(tmp_path, text=token_text())
    (root / "train.txt").write_text("1000092795\n")  # Flickr30k Entities style: ids, no .jpg
    (root / "val.txt").write_text("10002456\n")
    (root / "test.txt").write_text("1007129816\n")
    df = load_flickr30k(root)
    assert df.groupby("image").split.first().to_dict() == {
        "1000092795.jpg": "train",
        "10002456.jpg": "val",
        "1007129816.jpg": "test",
    }


def test_shipped_karpathy_lists_decide_for_their_images(tmp_path):
    # 1007129816.jpg is the first Karpathy test image; 1000092795.jpg a train image
    df = load_flickr30k(make_root(tmp_path, text=token_text()))
    split = df.groupby("image").split.first()
    assert split["1007129816.jpg"] == "test" and split["1000092795.jpg"] == "train"


def test_deterministic_split_sizes_and_stability():
    names = [f"{i}.jpg" for i in range(31_783)]
    split = data.deterministic_split(names)
    counts = pd.Series(split).value_counts()
    assert counts["val"] == 1000 and counts["test"] == 1000
    small = data.deterministic_split(names[:3178])
    assert pd.Series(small).value_counts()["test"] == 100
    assert data.deterministic_split(list(reversed(names[:3178]))) == small  # order does not matter
    assert sum(split[n] == small[n] for n in small) > 2900  # mostly the same images held out


# ----------------------------------------------------------------------------- real files from ../shared/data


def _linked_root(tmp_path, files, images="flickr30k_images", sub=None):
    root = tmp_path / "real"
    (root / images).mkdir(parents=True)
    target = root / sub if sub else root
    target.mkdir(exist_ok=True)
    for f in files:
        (target / f.name).symlink_to(f)
    return root


def test_real_karpathy_token_file(shared_data, tmp_path):
    root = _linked_root(tmp_path, [shared_data / "flickr30k" / "captions_karpathy.token"])
    df, warned = loaded(root)
    assert len(df) == 155_070 and df.image.nunique() == 31_014
    assert df.caption_id.between(0, 4).all() and df.caption.str.len().min() > 0
    assert df.groupby("image").split.first().value_counts().to_dict() == {"train": 29_000, "val": 1_014, "test": 1_000}
    assert [("&amp;" in str(w.message)) for w in warned] == [True]  # 88 captions carry an HTML entity
    assert not df.caption.str.contains("&amp;").any()


def test_real_original_token_head(shared_data, tmp_path):
    root = _linked_root(tmp_path, [shared_data / "flickr30k" / "results_20130124.head10.token"])
    df, warned = loaded(root)
    assert warned == [] and len(df) == 10
    assert df.caption[1] == "Two young , White males are outside near many bushes ."


def test_real_entities_split(shared_data, tmp_path):
    split_dir = shared_data / "flickr30k" / "entities_split"
    root = _linked_root(
        tmp_path,
        [
            shared_data / "flickr30k" / "captions_karpathy.token",
            *(split_dir / f"{s}.txt" for s in ("train", "val", "test")),
        ],
    )
    per_image = load_flickr30k(root).groupby("image").split.first()
    test_ids = set((split_dir / "test.txt").read_text().split())
    assert {n[:-4] for n in per_image[per_image == "test"].index} == test_ids & {n[:-4] for n in per_image.index}


def test_real_flickr8k_layout(shared_data, tmp_path):
    d = shared_data / "flickr8k"
    files = [d / "Flickr8k.token.txt", *(d / f"Flickr_8k.{s}Images.txt" for s in ("train", "dev", "test"))]
    root = _linked_root(tmp_path, files, images="Flicker8k_Dataset", sub="Flickr8k_text")
    df, warned = loaded(root)
    assert len(df) == 40_460 and df.image.nunique() == 8_092
    assert any(".jpg.1" in str(w.message) for w in warned)
    counts = df.groupby("image").split.first().value_counts()
    assert counts["train"] >= 6000 and counts["val"] >= 1000 and counts["test"] >= 1000
    official_test = set((d / "Flickr_8k.testImages.txt").read_text().split())
    assert official_test <= set(df[df.split == "test"].image)


def test_real_captions_in_results_csv_and_json_match_the_token_file(shared_data, tmp_path):
    lines = (shared_data / "flickr30k" / "captions_karpathy.token").read_text().splitlines()[:2000]
    rows = [(line.split("#")[0], int(line.split("#")[1].split("\t")[0]), line.split("\t")[1]) for line in lines]
    ref = load_flickr30k(make_root(tmp_path / "a", text=token_text(rows)))
    csv = load_flickr30k(make_root(tmp_path / "b", "results.csv", csv_text(rows)))
    js = load_flickr30k(make_root(tmp_path / "c", "dataset_flickr30k.json", json.dumps(karpathy(rows))))
    for df in (csv, js):
        pd.testing.assert_series_equal(df.caption, ref.caption)
        assert df.image.tolist() == ref.image.tolist()
