"""Flickr30k / Flickr8k on disk: annotations into a DataFrame, images into arrays.

No TensorFlow here: this module is quick to import and usable from the command line::

    python -m helpers.data verify DIR     # images and captions found vs the published counts
    python -m helpers.data make DIR       # write the embedded dataset
    python -m helpers.data agreement [DIR]  # human agreement on the test split (leave-one-out)
    python -m helpers.data download flickr8k --dest DIR [--base-url URL]   # see helpers.archives
    python -m helpers.data prepare ARCHIVE... --dest DIR                   # archives you already have

Layouts understood (``root`` is the folder you pass or ``$FLICKR30K_DIR``):

- images in ``flickr30k_images/`` (also Kaggle's ``flickr30k_images/flickr30k_images/``, and
  ``flickr30k-images/`` of the official tarball),
  ``Flicker8k_Dataset/``, ``Flickr8k_Dataset/``, ``Images/`` or directly in ``root``;
- captions from Karpathy's ``dataset_*.json``, else a ``.token`` file
  (``results_20130124.token``, ``Flickr8k.token.txt``: ``1000092795.jpg#0<TAB>caption``),
  else Kaggle's pipe-separated ``results.csv`` (``image_name| comment_number| comment``),
  looked for in ``root`` and the folders directly inside it.
"""

import hashlib
import html
import json
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import PROJECT_ROOT, one_line, shown_path
from .mini_flickr import make_mini_flickr
from .text import tokenize

__all__ = [
    "AnnotationError",
    "AnnotationWarning",
    "load_flickr30k",
    "read_captions",
    "load_image",
    "make_mini_flickr",
    "human_agreement_of",
    "find_dataset",
    "verify",
    "PUBLISHED_COUNTS",
]

DATA_DIR = PROJECT_ROOT / "data"
SHIPPED_CAPTIONS = DATA_DIR / "captions" / "flickr30k_karpathy_test.token"  # real, 5,000 captions
SHIPPED_SPLITS = DATA_DIR / "karpathy_split"
MINI_FLICKR_DIR = DATA_DIR / "mini_flickr"

PUBLISHED_COUNTS = {  # (images, captions)
    "flickr30k": (31_783, 158_915),
    "flickr8k": (8_091, 40_455),
}
# held-out images per split at full Flickr30k scale; smaller sets get proportionally fewer
_HELD_OUT_PER_SPLIT, _FULL_SIZE = 1_000, 31_783

IMAGE_DIRS = (
    "flickr30k_images/flickr30k_images",
    "flickr30k_images",
    "flickr30k-images",
    "Flicker8k_Dataset",
    "Flickr8k_Dataset",
    "Images",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLIT_FILE_SETS = (  # {split: file name}, tried in this order beside the annotations
    {"train": "train.txt", "val": "val.txt", "test": "test.txt"},
    {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"},
    {"train": "train_images.txt", "val": "val_images.txt", "test": "test_images.txt"},
)
COLUMNS = ["image", "caption_id", "caption", "split", "path"]


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file and line."""


class AnnotationWarning(UserWarning):
    """A defect in an annotation file that was repaired; the message names the first line."""


class _Repairs:
    """Collects repaired defects of one file, to warn once per kind of defect."""

    def __init__(self, path):
        self.path = shown_path(path)
        self.seen = {}  # what -> [first line, count]

    def note(self, what, where):
        """where: 'line 12' or 'image 3'."""
        entry = self.seen.setdefault(what, [where, 0])
        entry[1] += 1

    def warn(self):
        for what, (first, count) in self.seen.items():
            unit = first.split()[0]
            more = f" (and {count - 1} more {unit}{'s' if count > 2 else ''})" if count > 1 else ""
            warnings.warn(f"{self.path}, {first}{more}: {what}; repaired", AnnotationWarning, stacklevel=4)


# ----------------------------------------------------------------------------- reading files


def _read_bytes(path, what="annotation file"):
    """The bytes of ``path``; a folder, a FIFO, a link loop, a missing or unreadable file is an
    ``AnnotationError`` naming it (a FIFO is never opened: that would wait forever)."""
    import stat

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise AnnotationError(f"{what} {path} cannot be read: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise AnnotationError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise AnnotationError(f"{what} {path} is not a regular file (a pipe, socket or device)")
    try:
        return path.read_bytes()
    except OSError as err:
        raise AnnotationError(f"{what} {path} cannot be read: {err.strerror}") from None


def _decode_text(raw, path):
    """UTF-8 text of ``raw`` (a byte-order mark dropped); bad bytes name the file and line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line_no = raw[: err.start].count(b"\n") + 1
        raise AnnotationError(f"{path}, line {line_no}: not valid UTF-8 text ({err.reason})") from None


def _read_lines(path, repairs):
    """Text lines of ``path`` without line ends; notes a BOM and CRLF line ends."""
    raw = _read_bytes(path)
    if raw.startswith(b"\xef\xbb\xbf"):
        repairs.note("byte-order mark at the start of the file", "line 1")
    lines = _decode_text(raw, path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        if line.endswith("\r"):
            repairs.note("Windows (CRLF) line end", f"line {i + 1}")
            lines[i] = line[:-1]
    return lines


def _clean_caption(text, path, where, repairs, of):
    """Stripped caption with HTML entities unescaped; ``of`` names the caption in errors."""
    text = text.strip()
    if "&" in text:
        unescaped = html.unescape(text)
        if unescaped != text:
            repairs.note("HTML entity in the caption (e.g. '&amp;')", where)
            text = unescaped
    if not text:
        raise AnnotationError(f"{path}, {where}: empty caption for {of}")
    if not tokenize(text):
        raise AnnotationError(f"{path}, {where}: the caption for {of}, {text[:60]!r}, has no word")
    return text


_EXTENSION_QUIRK = re.compile(r"(.+\.jpe?g)\.\d+", flags=re.IGNORECASE)


def _image_name(name, path, where, repairs):
    name = name.strip()
    quirk = None if name.endswith(".jpg") else _EXTENSION_QUIRK.fullmatch(name)
    if quirk:  # Flickr8k's '2258277193_586949ec62.jpg.1'
        repairs.note(f"image name {name!r} has a number after its extension", where)
        name = quirk.group(1)
    if not name.lower().endswith(IMAGE_SUFFIXES) or "/" in name or "\\" in name:
        raise AnnotationError(f"{path}, {where}: {name!r} is not an image file name")
    return name


_TOKEN_STRICT = re.compile(r"([^\s#]+)#(\d+)\t(.*)")
_TOKEN_LOOSE = re.compile(r"\s*([^\t#]+?)\s*#\s*(\d+)\s*(?:\t|\s)\s*(.*)")


def _parse_token_file(path):
    """``IMAGE#N<TAB>caption`` lines -> list of (image, caption_id, caption)."""
    repairs = _Repairs(path)
    rows = []
    for i, line in enumerate(_read_lines(path, repairs)):
        line_no = i + 1
        if not line.strip():
            continue
        m = _TOKEN_STRICT.fullmatch(line)
        if m is None:
            m = _TOKEN_LOOSE.fullmatch(line)
            if m is None:
                raise AnnotationError(f"{path}, line {line_no}: expected 'IMAGE.jpg#N<TAB>caption', got {line[:80]!r}")
            repairs.note("stray spaces around the '#' or tab separators", f"line {line_no}")
        image = _image_name(m.group(1), path, f"line {line_no}", repairs)
        k = int(m.group(2))
        rows.append((image, k, _clean_caption(m.group(3), path, f"line {line_no}", repairs, f"{image}#{k}"), line_no))
    repairs.warn()
    return rows


_CSV_HEADER = ["image_name", "comment_number", "comment"]
_NUMBER_IN_TEXT = re.compile(r"(\d+)\s+(\S.*)")


def _parse_results_csv(path):
    """Kaggle's ``image_name| comment_number| comment`` -> list of (image, caption_id, caption)."""
    repairs = _Repairs(path)
    lines = _read_lines(path, repairs)
    rows = []
    for i, line in enumerate(lines):
        line_no = i + 1
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("|")]
        if line_no == 1 and [f.lower() for f in fields] == _CSV_HEADER:
            continue
        if len(fields) > 3:
            raise AnnotationError(
                f"{path}, line {line_no}: {len(fields)} fields separated by '|', expected 3 "
                f"('image_name| comment_number| comment'), got {line[:80]!r}"
            )
        if len(fields) == 2 and _NUMBER_IN_TEXT.fullmatch(fields[1]):
            # Kaggle's line 19999: '2199200615.jpg| 4   A dog runs across the grass .'
            repairs.note("comment number run into the comment text (missing '|')", f"line {line_no}")
            fields = [fields[0], *_NUMBER_IN_TEXT.fullmatch(fields[1]).groups()]
        if len(fields) != 3:
            raise AnnotationError(
                f"{path}, line {line_no}: expected 'image_name| comment_number| comment', got {line[:80]!r}"
            )
        if line_no == 1 and not fields[1].isdigit():
            raise AnnotationError(
                f"{path}, line 1: expected the header 'image_name| comment_number| comment', got {line[:80]!r}"
            )
        if not fields[1].isdigit():
            raise AnnotationError(f"{path}, line {line_no}: comment_number {fields[1]!r} is not a whole number")
        image = _image_name(fields[0], path, f"line {line_no}", repairs)
        k = int(fields[1])
        rows.append(
            (image, k, _clean_caption(fields[2], path, f"line {line_no}", repairs, f"{image}, comment {k}"), line_no)
        )
    repairs.warn()
    return rows


def _parse_karpathy_json(path):
    """Karpathy's ``dataset_*.json`` -> list of (image, caption_id, caption, split)."""
    text = _decode_text(_read_bytes(path), path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
    except RecursionError:
        raise AnnotationError(f"{path}: nested too deeply to be Karpathy's format") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise AnnotationError(f"{path}: expected a JSON object with an 'images' list (Karpathy's format)")
    repairs = _Repairs(path)
    rows, index_of = [], {}
    for idx, entry in enumerate(images):
        where = f"{path}, image {idx}"
        if not isinstance(entry, dict) or "filename" not in entry or not isinstance(entry.get("sentences"), list):
            raise AnnotationError(f"{where}: expected an object with 'filename' and a 'sentences' list")
        image = _image_name(str(entry["filename"]), path, f"image {idx}", repairs)
        if image in index_of:  # in two splits it would leak test images into training
            raise AnnotationError(f"{path}, images {index_of[image]} and {idx}: {image} is listed twice")
        index_of[image] = idx
        split = {"restval": "train"}.get(entry.get("split"), entry.get("split"))
        if split not in ("train", "val", "test"):
            raise AnnotationError(f"{where} ({image}): split {entry.get('split')!r} is not train, val, test or restval")
        for k, sentence in enumerate(entry["sentences"]):
            if not isinstance(sentence, dict) or not isinstance(sentence.get("raw"), str):
                raise AnnotationError(f"{where} ({image}), sentence {k}: no 'raw' caption text")
            rows.append(
                (
                    image,
                    k,
                    _clean_caption(sentence["raw"], path, f"image {idx}", repairs, f"{image}, sentence {k}"),
                    split,
                )
            )
    repairs.warn()
    return rows


# ----------------------------------------------------------------------------- finding things


def _find_images_dir(root):
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()):
        return root
    raise FileNotFoundError(
        f"no images folder in {root}: looked for {', '.join(d + '/' for d in IMAGE_DIRS)} and *.jpg files"
    )


def _search_dirs(root, images_dir):
    """``root`` and the folders directly inside it, except the images folder itself."""
    dirs = [root] + sorted(d for d in root.iterdir() if d.is_dir() and d != images_dir and not d.name.startswith("."))
    return dirs


def _dataset_named(names):
    """'flickr8k' when most file names look like Flickr8k's ('1000268201_693b08cb0e.jpg'),
    else 'flickr30k' (whose names are numbers: '1000092795.jpg')."""
    names = pd.Series(list(names), dtype=str)
    return "flickr8k" if len(names) and names.str.fullmatch(r"\d+_[0-9a-f]+\.jpg").mean() > 0.5 else "flickr30k"


def _karpathy_file(candidates, images_dir):
    """The one of several ``dataset_*.json`` (Karpathy's ``caption_datasets.zip`` holds
    flickr8k, flickr30k and coco) that is for the images in ``images_dir``; says which."""
    if len(candidates) == 1:
        return candidates[0]
    if images_dir.name in ("Flicker8k_Dataset", "Flickr8k_Dataset"):
        dataset = "flickr8k"
    else:
        images = (p.name for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        dataset = _dataset_named(name for name, _ in zip(images, range(200)))  # a sample is enough
    names = ", ".join(p.name for p in candidates)
    for p in candidates:
        if p.name == f"dataset_{dataset}.json":
            print(f"Captions from {shown_path(p)}, of {names}: the images in {shown_path(images_dir)} are {dataset}'s.")
            return p
    raise AnnotationError(
        f"{candidates[0].parent} holds several Karpathy files ({names}) and none is dataset_{dataset}.json, "
        f"for the {dataset} images in {images_dir}; remove the others"
    )


def _find_annotations(root, images_dir):
    """(kind, path) of the annotation file to use: 'json', 'token' or 'csv'."""
    dirs = _search_dirs(root, images_dir)
    for d in dirs:
        candidates = sorted(d.glob("dataset_*.json"))
        if candidates:
            return "json", _karpathy_file(candidates, images_dir)
    for d in dirs:
        if (d / "results_20130124.token").is_file():
            return "token", d / "results_20130124.token"
    for d in dirs:
        tokens = sorted(
            p for p in d.iterdir() if p.name.endswith((".token", ".token.txt")) and "lemma" not in p.name.lower()
        )
        if tokens:
            return "token", tokens[0]
    for d in dirs:
        if (d / "results.csv").is_file():
            return "csv", d / "results.csv"
    raise FileNotFoundError(
        f"no caption file in {root} or the folders inside it: looked for dataset_*.json (Karpathy), "
        "results_20130124.token or another *.token file, and results.csv"
    )


def _read_split_list(path):
    """Image file names listed one per line (ids without '.jpg' get it added)."""
    names = []
    for line in _decode_text(_read_bytes(path, "split list"), path).splitlines():
        name = line.strip()
        if name:
            names.append(name if name.lower().endswith(IMAGE_SUFFIXES) else name + ".jpg")
    return names


def _split_lists_beside(annotation_dir):
    for file_set in SPLIT_FILE_SETS:
        if all((annotation_dir / f).is_file() for f in file_set.values()):
            return {split: annotation_dir / f for split, f in file_set.items()}
    return None


def _assign_from_lists(images, lists):
    """{image: split} for the images named in ``lists`` ({split: path})."""
    wanted = set(images)
    assigned = {}
    for split, path in lists.items():
        for name in _read_split_list(path):
            if name in wanted:
                assigned.setdefault(name, split)
    return assigned


def deterministic_split(images):
    """{image: split} from a hash of each file name: stable, independent of order.

    1,000 val and 1,000 test images per 31,783 (Flickr30k's size), proportionally fewer
    on smaller sets; the rest train.
    """
    images = sorted(set(images), key=lambda n: hashlib.md5(n.encode()).hexdigest())
    n_held = int(round(len(images) * _HELD_OUT_PER_SPLIT / _FULL_SIZE))
    split = {name: "train" for name in images}
    for name in images[:n_held]:
        split[name] = "test"
    for name in images[n_held : 2 * n_held]:
        split[name] = "val"
    return split


# ----------------------------------------------------------------------------- public API


def _captions_frame(kind, path):
    """Parse one annotation file of ``kind`` ('json', 'token' or 'csv') into a DataFrame:
    image, caption_id, caption (and split, from a Karpathy JSON)."""
    if kind == "json":
        df = pd.DataFrame(_parse_karpathy_json(path), columns=["image", "caption_id", "caption", "split"])
    else:
        rows = (_parse_token_file if kind == "token" else _parse_results_csv)(path)
        df = pd.DataFrame(rows, columns=["image", "caption_id", "caption", "line"])
        dup = df.duplicated(["image", "caption_id"], keep=False)
        if dup.any():
            first = df[dup].iloc[0]
            lines = df.loc[dup & (df.image == first.image) & (df.caption_id == first.caption_id), "line"].tolist()
            raise AnnotationError(
                f"{path}, lines {', '.join(map(str, lines))}: caption {first.caption_id} of {first.image} "
                "appears more than once"
            )
        df = df.drop(columns="line")
    df["caption_id"] = df["caption_id"].astype(int)
    return df


def load_flickr30k(root):
    """Read a Flickr30k-style dataset into a DataFrame, one row per caption.

    Columns: ``image`` (file name), ``caption_id`` (int), ``caption`` (str, as in the file,
    stripped), ``split`` ('train'/'val'/'test'), ``path`` (str, where the image should be).

    The split comes from the Karpathy JSON when that is the annotation file; else from split
    lists beside the annotations (Flickr30k Entities' ``train.txt``..., Flickr8k's
    ``Flickr_8k.*Images.txt``); else from the Karpathy split lists shipped in ``data/``, for
    the images they list; the rest get ``deterministic_split``.

    Raises ``FileNotFoundError`` without an images folder or a caption file, and
    ``AnnotationError`` (a ValueError naming the file and line) on a malformed file.
    Defects with one clear meaning (byte-order mark, CRLF, stray spaces, Kaggle's comment
    number run into the text, HTML entities, Flickr8k's '.jpg.1') are repaired with one
    ``AnnotationWarning`` per kind of defect.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    images_dir = _find_images_dir(root)
    kind, ann_path = _find_annotations(root, images_dir)

    df = _captions_frame(kind, ann_path)
    if "split" not in df:
        images = df["image"].unique().tolist()
        lists = _split_lists_beside(ann_path.parent)
        assigned = _assign_from_lists(images, lists) if lists else {}
        if lists is None and SHIPPED_SPLITS.is_dir():
            shipped = {s: SHIPPED_SPLITS / f"{s}_images.txt" for s in ("train", "val", "test")}
            assigned = _assign_from_lists(images, shipped)
        assigned.update(deterministic_split([n for n in images if n not in assigned]))
        df["split"] = df["image"].map(assigned)

    df["path"] = str(images_dir) + os.sep + df["image"]
    df.attrs.update(annotations=str(ann_path), images_dir=str(images_dir))
    return df[COLUMNS]


def read_captions(path):
    """Captions from one annotation file, no images needed: a DataFrame with columns
    ``image``, ``caption_id``, ``caption`` (and ``split`` for a Karpathy JSON).

    The format follows the name: ``*.json`` Karpathy's, ``*.csv`` Kaggle's
    ``results.csv``, anything else the ``.token`` format. Same checks and repairs as
    ``load_flickr30k``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file {path} does not exist")
    return _captions_frame({".json": "json", ".csv": "csv"}.get(path.suffix, "token"), path)


def load_image(path, size=None):
    """Read an image file as a uint8 RGB array (H, W, 3).

    size: optional ``(height, width)`` to resize to (area interpolation when shrinking).
    A missing, empty or undecodable file raises ``ValueError`` naming the path.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file {path} does not exist")
    data = np.fromfile(path, dtype=np.uint8)  # cv2.imread fails silently and on non-ASCII paths
    if data.size == 0:
        raise ValueError(f"image file {path} is empty")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"image file {path} could not be decoded (corrupt or not an image)")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if size is not None:
        height, width = (int(s) for s in size)
        if height <= 0 or width <= 0:
            raise ValueError(f"size must be (height, width) with positive numbers, got {size!r}")
        shrink = height * width < image.shape[0] * image.shape[1]
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image


def load_boxes(root):
    """Object boxes of the dataset in ``root``: ``{image file name: [{"word": str, "box":
    [x0, y0, x1, y1]}]}`` in pixels of that image.

    From ``boxes.json`` where it exists (the embedded dataset writes one), else from Flickr30k
    Entities (``Annotations/*.xml`` and ``Sentences/*.txt`` in ``root``), read as its official
    parser reads them: 1-based corners made 0-based, entities marked ``nobndbox`` or ``scene``
    (and phrase id 0, "not visual") without boxes. One entry per distinct (head noun, box) of
    an image: the head noun is the phrase's last word in lower case, the box the union of the
    entity's boxes. ``{}`` where the dataset has neither.
    """
    root = Path(root)
    path = root / "boxes.json"
    if path.exists() or path.is_symlink():
        try:
            return json.loads(_decode_text(_read_bytes(path, "box file"), path))
        except (json.JSONDecodeError, RecursionError) as err:
            raise AnnotationError(f"{path} is not a readable JSON file of boxes ({err})") from None
    if (root / "Annotations").is_dir() and (root / "Sentences").is_dir():
        return _entities_boxes(root / "Annotations", root / "Sentences")
    return {}


def _entity_boxes(path):
    """{entity id: union box [x0, y0, x1, y1], 0-based} of one Entities XML file."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(_read_bytes(path))
    except ET.ParseError as err:
        raise AnnotationError(f"{path}, line {err.position[0]}: not well-formed XML ({err})") from None
    boxes = {}
    for obj in root.iter("object"):
        names, box = obj.findall("name"), obj.find("bndbox")
        if not names or box is None:  # nobndbox or scene: no box
            continue
        try:
            corners = [int(box.find(k).text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError):
            raise AnnotationError(f"{path}: entity {names[0].text}'s bndbox lacks a whole-number corner") from None
        entity = names[0].text.strip()  # the first name, as the official parser reads it
        old = boxes.get(entity)
        boxes[entity] = corners if old is None else [*map(min, old[:2], corners[:2]), *map(max, old[2:], corners[2:])]
    return boxes


def _entity_phrases(path):
    """(entity id, head noun) of every phrase ``[/EN#id/type words]`` in one Sentences file."""
    phrases = []
    for line_no, line in enumerate(_decode_text(_read_bytes(path), path).splitlines(), start=1):
        entity, words = None, []
        for token in line.split():
            if entity is None and token.startswith("[/EN#"):
                entity, words = token.split("/")[1][3:], []
            elif entity is not None:
                words.append(token[:-1] if token.endswith("]") else token)
                if token.endswith("]"):
                    phrases.append((entity, words[-1].lower()))
                    entity = None
        if entity is not None:
            raise AnnotationError(f"{path}, line {line_no}: phrase of entity {entity} is not closed with ']'")
    return phrases


def _entities_boxes(annotations, sentences):
    out = {}
    for xml_path in sorted(annotations.glob("*.xml")):
        text = sentences / f"{xml_path.stem}.txt"
        if not text.is_file():
            continue
        boxes, entries, seen = _entity_boxes(xml_path), [], set()
        for entity, word in _entity_phrases(text):
            if entity in boxes and (word, tuple(boxes[entity])) not in seen:
                seen.add((word, tuple(boxes[entity])))
                entries.append({"word": word, "box": boxes[entity]})
        if entries:
            out[f"{xml_path.stem}.jpg"] = entries
    return out


def human_agreement_of(df, split="test"):
    """``helpers.metrics.human_agreement`` of one split of ``df`` (``load_flickr30k``):
    {bleu1..bleu4, cider}, or None where no image of the split has two captions."""
    from .metrics import human_agreement

    rows = df[df.split == split].sort_values(["image", "caption_id"])
    return human_agreement(rows.groupby("image").caption.agg(list).to_dict())


def find_dataset(verbose=True):
    """Where the course's images and captions are, as a Path.

    ``$FLICKR30K_DIR`` if set, else ``data/flickr30k/`` if it exists, else the embedded
    dataset in ``data/mini_flickr/`` (generated on first use, a few seconds). Prints which.
    """
    env = os.environ.get("FLICKR30K_DIR")
    if env:
        root, why = Path(env).expanduser(), "$FLICKR30K_DIR"
        if not root.is_dir():
            raise FileNotFoundError(f"$FLICKR30K_DIR is set to {env}, which is not a folder")
    elif (DATA_DIR / "flickr30k").is_dir():
        root, why = DATA_DIR / "flickr30k", "data/flickr30k/ exists"
    else:
        root = make_mini_flickr(MINI_FLICKR_DIR)
        why = "the embedded dataset: no real Flickr30k found; set $FLICKR30K_DIR or fill data/flickr30k/ to use it"
    if verbose:
        print(f"Using the dataset in {shown_path(root)} ({why}).")
    return root


def verify(root, out=sys.stdout, show=10):
    """Compare what is in ``root`` with the published counts; return a dict of findings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_flickr30k(root)
    images_dir = Path(df.attrs["images_dir"])
    on_disk = {p.name for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    captioned = set(df["image"])
    no_captions = sorted(on_disk - captioned)
    no_image = sorted(captioned - on_disk)
    name = _dataset_named(df["image"])
    n_images, n_captions = PUBLISHED_COUNTS[name]

    def p(*args):
        print(*args, file=out)

    p(f"Annotations: {df.attrs['annotations']}")
    p(f"Images:      {images_dir}")
    for w in caught:
        p(f"  repaired: {w.message}")
    p(f"Looks like {name}; published: {n_images:,} images, {n_captions:,} captions.")
    p(f"  images on disk         {len(on_disk):>8,}   ({len(on_disk) - n_images:+,} vs published)")
    p(f"  captions in the file   {len(df):>8,}   ({len(df) - n_captions:+,} vs published)")
    p(f"  captioned images       {len(captioned):>8,}")
    p("  split                  " + ", ".join(f"{s} {c:,}" for s, c in df.groupby("split")["image"].nunique().items()))
    for title, names in (("images without captions", no_captions), ("captioned images not on disk", no_image)):
        p(f"  {title}: {len(names):,}")
        for n in names[:show]:
            p(f"    {n}")
        if len(names) > show:
            p(f"    ... and {len(names) - show:,} more")
    return {
        "dataset": name,
        "images_on_disk": len(on_disk),
        "captions": len(df),
        "images_without_captions": no_captions,
        "captions_without_images": no_image,
    }


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="images and captions found vs the published counts")
    v.add_argument("root", type=Path)
    m = sub.add_parser("make", help="write the embedded dataset")
    m.add_argument("root", type=Path, nargs="?", default=MINI_FLICKR_DIR)
    m.add_argument("--n-images", type=int, default=None)
    m.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("agreement", help="human agreement on the test split: each caption vs the image's others")
    a.add_argument("root", type=Path, nargs="?", default=None, help="a dataset folder (default: find_dataset())")
    d = sub.add_parser("download", help="download a dataset (checked against pinned digests) and lay it out")
    d.add_argument("dataset", choices=["flickr8k"])
    d.add_argument("--dest", type=Path, required=True, help="the dataset folder to create")
    d.add_argument("--base-url", default=None, help="a mirror holding the same archive files")
    p = sub.add_parser("prepare", help="lay out archives you already have as one dataset folder")
    p.add_argument("archives", type=Path, nargs="+", help="zips, tarballs, and caption or split files")
    p.add_argument("--dest", type=Path, required=True, help="the dataset folder to create")
    args = parser.parse_args(argv)
    try:
        if args.command in ("download", "prepare"):
            from . import archives

            if args.command == "download":
                archives.download(args.dataset, args.dest, base_url=args.base_url)
            else:
                archives.prepare(args.archives, args.dest)
            print(f"Ready: {args.dest}")
        elif args.command == "verify":
            verify(args.root)
        elif args.command == "make":
            kwargs = {} if args.n_images is None else {"n_images": args.n_images}
            print(make_mini_flickr(args.root, seed=args.seed, **kwargs))
        else:
            root = args.root or find_dataset()
            scores = human_agreement_of(load_flickr30k(root))
            if scores is None:
                parser.exit(2, f"error: the test images of {root} have one caption each: no human agreement\n")
            print("Human agreement on the test split (each caption vs the image's other captions):")
            print("  " + "  ".join(f"{k.upper()} {v:.3f}" for k, v in scores.items()))
    except (OSError, ValueError) as err:
        parser.exit(2, f"error: {one_line(err)}\n")


if __name__ == "__main__":
    main()
