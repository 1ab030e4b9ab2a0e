"""helpers.data.load_boxes on Flickr30k Entities files written here in the real format
(Annotations/*.xml, Sentences/*.txt), read the way the official flickr30k_entities_utils.py
reads them, and on the embedded dataset's boxes.json."""

import json

import pytest

from helpers.data import AnnotationError, load_boxes

XML = """<annotation>
  <filename>{image}.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
{objects}</annotation>
"""


def box(entity, x0, y0, x1, y1, *more_names):
    names = "".join(f"<name>{n}</name>" for n in (entity, *more_names))
    return (
        f"  <object>{names}<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>"
        "</object>\n"
    )


def no_box(entity, scene=0):
    return f"  <object><name>{entity}</name><nobndbox>{1 - scene}</nobndbox><scene>{scene}</scene></object>\n"


def write_entities(root, image, objects, sentences):
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Sentences").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / f"{image}.xml").write_text(XML.format(image=image, objects="".join(objects)))
    (root / "Sentences" / f"{image}.txt").write_text("\n".join(sentences) + "\n")


def test_entities_give_one_union_box_per_head_noun(tmp_path):
    write_entities(
        tmp_path,
        "1000092795",
        [
            box(1, 11, 21, 100, 200),  # two boxes of one entity: their union
            box(1, 51, 1, 150, 120),
            box(2, 301, 101, 400, 300, 3),  # a box shared by entities 2 and 3: the first name counts
            no_box(4),  # not visible
            no_box(5, scene=1),  # the whole scene
        ],
        [
            "[/EN#1/people Two young guys] with [/EN#4/bodyparts shaggy hair] look at [/EN#2/bodyparts their hands] .",
            "[/EN#1/people Two young , White males] are outside near [/EN#5/scene many bushes] .",
            "[/EN#1/people Two Men] stand [/EN#0/notvisual together] by [/EN#2/other the Hands] .",
            "[/EN#3/people A man] waves .",
        ],
    )
    assert load_boxes(tmp_path) == {
        "1000092795.jpg": [
            {"word": "guys", "box": [10, 0, 149, 199]},
            {"word": "hands", "box": [300, 100, 399, 299]},
            {"word": "males", "box": [10, 0, 149, 199]},
            {"word": "men", "box": [10, 0, 149, 199]},
        ]
    }


def test_images_without_boxed_phrases_are_left_out_and_boxes_json_comes_first(tmp_path):
    write_entities(tmp_path, "1", [no_box(1)], ["[/EN#1/people A man] sleeps ."])
    write_entities(tmp_path, "2", [box(7, 1, 1, 10, 10)], ["[/EN#7/animals A dog] runs ."])
    (tmp_path / "Annotations" / "3.xml").write_text(XML.format(image="3", objects=box(1, 1, 1, 5, 5)))  # no sentences
    assert load_boxes(tmp_path) == {"2.jpg": [{"word": "dog", "box": [0, 0, 9, 9]}]}
    embedded = {"mini1.jpg": [{"word": "star", "box": [1, 2, 3, 4]}]}
    (tmp_path / "boxes.json").write_text(json.dumps(embedded))
    assert load_boxes(tmp_path) == embedded
    assert load_boxes(tmp_path / "Sentences") == {}  # neither: no boxes


@pytest.mark.parametrize(
    ("xml", "sentence", "message"),
    [
        ("<annotation><object>", "[/EN#1/people A man] .", r"1\.xml, line 1: not well-formed XML"),
        (XML.format(image="1", objects=box(1, 1, 1, "x", 5)), "[/EN#1/people A man] .", "entity 1's bndbox lacks"),
        (XML.format(image="1", objects=box(1, 1, 1, 5, 5)), "ok .\n[/EN#1/people A man .", r"1\.txt, line 2: phrase"),
    ],
)
def test_malformed_entities_files_are_named_with_their_line(tmp_path, xml, sentence, message):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Sentences").mkdir()
    (tmp_path / "Annotations" / "1.xml").write_text(xml)
    (tmp_path / "Sentences" / "1.txt").write_text(sentence + "\n")
    with pytest.raises(AnnotationError, match=message):
        load_boxes(tmp_path)


def test_the_embedded_dataset_keeps_its_boxes(mini_root):
    boxes = load_boxes(mini_root)
    assert len(boxes) == 120 and all(b["box"][0] < b["box"][2] for entries in boxes.values() for b in entries)
