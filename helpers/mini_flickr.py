"""The embedded dataset: OpenCV-drawn scenes written in Flickr30k's layout (no TensorFlow).

Each image holds 1-3 shapes of distinct kinds (7 kinds, 7 colours, two sizes) on a textured
background, placed in a row or a column so that "left of" and "above" are never in doubt.
Five differently worded captions come from a small grammar with unevenly weighted synonyms,
sentence frames and mention orders (mostly left to right), so that captions vary the way
people's do while a perfect captioner can still score high.

Written files, as in the real dataset, plus two of its own::

    flickr30k_images/mini00000.jpg ...   96 x 96 JPEG
    results.csv                          image_name| comment_number| comment   (Kaggle)
    dataset_flickr30k.json               Karpathy's format, with the split
    boxes.json                           {image: [{"word": noun, "box": [x0, y0, x1, y1]}]}
    scenes.json                          what was drawn (to check what a caption names)
    mini_flickr.json                     the arguments; written last: the dataset is complete
"""

import bisect
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import stale_temporaries
from .text import tokenize

IMAGE_SIZE = 96
DEFAULT_N_IMAGES = 4000
HELD_OUT_FRACTION = 0.075  # of the images, for each of val and test
FORMAT_VERSION = 1
MARKER = "mini_flickr.json"

# word choices: (word, weight); weights need not sum to one
NOUNS = {
    "circle": [("circle", 8), ("disc", 2)],
    "square": [("square", 8), ("box", 2)],
    "triangle": [("triangle", 1)],
    "star": [("star", 1)],
    "cross": [("cross", 1)],
    "diamond": [("diamond", 8), ("rhombus", 2)],
    "ring": [("ring", 8), ("hoop", 2)],
}
COLOURS = {  # RGB
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (40, 75, 220),
    "yellow": (240, 215, 35),
    "purple": (140, 55, 175),
    "orange": (245, 135, 25),
    "white": (245, 245, 245),
}
COLOUR_WORDS = {c: [(c, 1)] for c in COLOURS}
COLOUR_WORDS["purple"] = [("purple", 8), ("violet", 2)]
SIZE_WORDS = {"small": [("small", 7), ("little", 2), ("tiny", 1)], "large": [("large", 5), ("big", 4), ("huge", 1)]}
RADIUS = {"small": (6.0, 8.0), "large": (11.5, 14.0)}
RELATIONS = {  # how object A stands to object B
    "left": [("to the left of", 6), ("left of", 2), ("next to", 1), ("beside", 1)],
    "right": [("to the right of", 6), ("right of", 2), ("next to", 1), ("beside", 1)],
    "above": [("above", 7), ("over", 2), ("on top of", 1)],
    "below": [("below", 7), ("under", 2), ("beneath", 1)],
}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
BACKGROUNDS = {
    "noisy": [("noisy", 6), ("grainy", 4)],
    "striped": [("striped", 1)],
    "checkered": [("checkered", 7), ("chequered", 3)],
    "shaded": [("shaded", 6), ("dark", 4)],
}
PLACES = {  # where a single object is, relative to the image centre
    "left": [("on the left", 1)],
    "right": [("on the right", 1)],
    "top": [("at the top", 1)],
    "bottom": [("at the bottom", 1)],
    "middle": [("in the middle", 6), ("in the centre", 4)],
}
PREFIXES = [("", 16), ("there is ", 2), ("a picture of ", 2), ("an image of ", 1), ("a drawing of ", 1)]


_CUMULATIVE = {}


def _pick(rng, choices):
    """One word from [(word, weight), ...], drawn in proportion to the weights."""
    key = id(choices)
    if key not in _CUMULATIVE:
        total = sum(w for _, w in choices)
        _CUMULATIVE[key] = (list(itertools.accumulate(w / total for _, w in choices)), [w for w, _ in choices])
    cumulative, words = _CUMULATIVE[key]
    return words[min(bisect.bisect_right(cumulative, rng.random()), len(words) - 1)]


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


# ----------------------------------------------------------------------------- scenes


def _layout(rng, n_objects):
    """Sizes and centres of ``n_objects`` in a row (or, for two, sometimes a column)."""
    axis = 1 if n_objects == 2 and rng.random() < 0.35 else 0  # 0: a row, 1: a column
    margin, gap = 3.0, 4.0
    while True:
        sizes = [("small", "large")[rng.random() < 0.5] for _ in range(n_objects)]
        radii = [rng.uniform(*RADIUS[s]) for s in sizes]
        extent = [2.3 * r for r in radii]  # the widest shape spans about 2.3 r
        free = IMAGE_SIZE - 2 * margin - sum(extent) - gap * (n_objects - 1)
        if free >= 0:
            break
    spaces = rng.dirichlet(np.ones(n_objects + 1)) * free
    along, centres = margin, []
    for i in range(n_objects):
        along += spaces[i]
        c_along = along + extent[i] / 2
        along += extent[i] + gap
        half = extent[i] / 2 + margin
        base = centres[0][1 - axis] if centres else rng.uniform(half + 6, IMAGE_SIZE - half - 6)
        across = float(np.clip(base + rng.uniform(-7, 7), half, IMAGE_SIZE - half))
        centres.append((c_along, across) if axis == 0 else (across, c_along))
    return sizes, radii, centres, axis


def _shape_points(kind, cx, cy, r):
    """Polygon (k, 2) of a filled shape; circles and rings are drawn separately."""
    if kind == "square":
        s = 0.9 * r
        return np.array([[cx - s, cy - s], [cx + s, cy - s], [cx + s, cy + s], [cx - s, cy + s]])
    if kind == "triangle":
        a = np.deg2rad([-90, 30, 150])
        return np.stack([cx + 1.15 * r * np.cos(a), cy + 0.1 * r + 1.15 * r * np.sin(a)], axis=1)
    if kind == "diamond":
        return np.array([[cx, cy - 1.15 * r], [cx + 0.8 * r, cy], [cx, cy + 1.15 * r], [cx - 0.8 * r, cy]])
    if kind == "star":
        a = np.deg2rad(np.arange(10) * 36 - 90)
        rad = np.where(np.arange(10) % 2 == 0, 1.15 * r, 0.48 * r)
        return np.stack([cx + rad * np.cos(a), cy + rad * np.sin(a)], axis=1)
    if kind == "cross":
        w, s = 0.38 * r, 1.05 * r
        return np.array(
            [
                [cx - w, cy - s],
                [cx + w, cy - s],
                [cx + w, cy - w],
                [cx + s, cy - w],
                [cx + s, cy + w],
                [cx + w, cy + w],
                [cx + w, cy + s],
                [cx - w, cy + s],
                [cx - w, cy + w],
                [cx - s, cy + w],
                [cx - s, cy - w],
                [cx - w, cy - w],
            ]
        )
    raise ValueError(f"unknown shape kind {kind!r}")


def _background(rng, kind):
    import cv2

    n = IMAGE_SIZE
    base = rng.uniform(95, 165)
    tint = rng.uniform(-12, 12, size=3)  # greys with a faint colour cast
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    if kind == "noisy":
        field = np.full((n, n), base, np.float32)
    elif kind == "striped":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(7, 13)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        field = base + 22 * np.sign(np.sin(2 * np.pi * phase))
    elif kind == "checkered":
        cell = rng.integers(8, 17)
        field = base + 20 * (((xx // cell) + (yy // cell)) % 2 * 2 - 1)
    else:  # shaded: a linear ramp, darker overall
        angle = rng.uniform(0, 2 * np.pi)
        ramp = ((xx - n / 2) * np.cos(angle) + (yy - n / 2) * np.sin(angle)) / n
        field = base - 45 + 70 * ramp
    grain = cv2.GaussianBlur(rng.standard_normal((n, n), dtype=np.float32), (3, 3), 0) * 14
    image = field[..., None] + grain[..., None] + tint.astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_scene(rng):
    """A scene dict (background, objects with kind/colour/size/box) and its RGB image."""
    import cv2

    n_objects = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    kinds = [str(k) for k in rng.choice(list(NOUNS), size=n_objects, replace=False)]
    colours = [str(c) for c in rng.choice(list(COLOURS), size=n_objects)]
    background = str(rng.choice(list(BACKGROUNDS)))
    sizes, radii, centres, axis = _layout(rng, n_objects)
    image = _background(rng, background)
    objects = []
    shift = 4  # sub-pixel precision for OpenCV's drawing: coordinates in 1/16 px
    for kind, colour, size, r, (cx, cy) in zip(kinds, colours, sizes, radii, centres):
        rgb = tuple(float(v) for v in np.clip(np.array(COLOURS[colour]) + rng.normal(0, 10, 3), 0, 255))
        mask = np.zeros(image.shape[:2], np.uint8)
        for target, value in ((image, rgb), (mask, 255)):  # anti-aliased onto the image; the mask gives the box
            if kind in ("circle", "ring"):
                thickness = -1 if kind == "circle" else max(2, int(round(0.4 * r)))
                rad = r * 1.05 if kind == "circle" else r * 1.05 - thickness / 2
                cv2.circle(target, (int(cx * 16), int(cy * 16)), int(rad * 16), value, thickness, cv2.LINE_AA, shift)
            else:
                pts = np.round(_shape_points(kind, cx, cy, r) * 16).astype(np.int32)
                cv2.fillPoly(target, [pts], value, cv2.LINE_AA, shift)
        ys, xs = np.nonzero(mask > 64)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        objects.append(
            {"kind": kind, "colour": colour, "size": size, "box": box, "centre": [round(cx, 1), round(cy, 1)]}
        )
    noise = rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32) * 5  # sensor noise over everything
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    scene = {"background": background, "axis": ["row", "column"][axis], "objects": objects}
    return scene, image


# ----------------------------------------------------------------------------- captions


def _noun_phrase(rng, obj, with_size):
    words = []
    if with_size:
        words.append(_pick(rng, SIZE_WORDS[obj["size"]]))
    words.append(_pick(rng, COLOUR_WORDS[obj["colour"]]))
    noun = _pick(rng, NOUNS[obj["kind"]])
    words.append(noun)
    return f"{_article(words[0])} {' '.join(words)}", noun


def _relation(a, b, axis):
    """How object a stands to object b along the scene's axis."""
    if axis == "row":
        return "left" if a["centre"][0] < b["centre"][0] else "right"
    return "above" if a["centre"][1] < b["centre"][1] else "below"


def _place(obj):
    dx, dy = obj["centre"][0] - IMAGE_SIZE / 2, obj["centre"][1] - IMAGE_SIZE / 2
    if max(abs(dx), abs(dy)) < IMAGE_SIZE / 6:
        return "middle"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def make_caption(scene, rng):
    """One caption for a scene, and the object noun used for each object (in scene order)."""
    objects = scene["objects"]
    key = 0 if scene["axis"] == "row" else 1
    order = sorted(range(len(objects)), key=lambda i: objects[i]["centre"][key])  # left to right / top down
    if rng.random() < (0.15 if len(objects) == 2 else 0.1):
        order = order[::-1] if len(objects) == 2 else [int(i) for i in rng.permutation(order)]
    with_size = rng.random() < 0.9
    phrases, nouns = {}, {}
    for i in order:
        phrases[i], nouns[i] = _noun_phrase(rng, objects[i], with_size)
    ps = [phrases[i] for i in order]
    if len(objects) == 1:
        text = ps[0]
        if rng.random() < 0.4:
            text += " " + _pick(rng, PLACES[_place(objects[0])])
    elif len(objects) == 2:
        rel = _relation(objects[order[0]], objects[order[1]], scene["axis"])
        frame = rng.random()
        if frame < 0.8:
            text = f"{ps[0]} {_pick(rng, RELATIONS[rel])} {ps[1]}"
        else:
            text = f"{ps[0]} and {ps[1]}"
    else:
        frame = rng.random()
        if frame < 0.55:
            text = f"{ps[0]}, {ps[1]} and {ps[2]}"
        elif frame < 0.8:
            rel = _relation(objects[order[0]], objects[order[1]], scene["axis"])
            text = f"{ps[0]} {_pick(rng, RELATIONS[rel])} {ps[1]} and {ps[2]}"
        else:
            text = f"three shapes: {ps[0]}, {ps[1]} and {ps[2]}"
    if rng.random() < (0.3 if len(objects) == 1 else 0.12):
        text += f" on a {_pick(rng, BACKGROUNDS[scene['background']])} background"
    text = _pick(rng, PREFIXES) + text
    return text[0].upper() + text[1:] + ".", [nouns[i] for i in range(len(objects))]


def make_captions(scene, rng, n=5):
    """``n`` different captions of one scene and, per object, the set of nouns they use."""
    captions, used = [], [set() for _ in scene["objects"]]
    for _ in range(200):
        text, nouns = make_caption(scene, rng)
        if text not in captions:
            captions.append(text)
            for seen, noun in zip(used, nouns):
                seen.add(noun)
        if len(captions) == n:
            return captions, used
    raise RuntimeError(f"the grammar gave fewer than {n} different captions for scene {scene}")


# ----------------------------------------------------------------------------- writing


def _split_of(index, n_images):
    n_held = max(1, int(round(n_images * HELD_OUT_FRACTION))) if n_images >= 3 else 0
    if index >= n_images - n_held:
        return "test"
    if index >= n_images - 2 * n_held:
        return "val"
    return "train"


def _write_json(path, obj):
    path.write_text(json.dumps(obj, indent=None, separators=(",", ":"), sort_keys=False) + "\n", encoding="utf-8")


def make_mini_flickr(root, n_images=DEFAULT_N_IMAGES, seed=0, progress=None):
    """Write the embedded dataset into ``root`` and return ``root`` as a Path.

    Byte-identical for the same ``n_images`` and ``seed``. If ``root`` already holds a
    complete dataset made with the same arguments it is returned as it is. The files are
    written into a temporary sibling folder and renamed into place, so an interrupted run
    never leaves a folder that looks complete. ``progress``: show a progress bar (default:
    when generating 500 images or more).
    """
    import cv2

    root = Path(root).expanduser().resolve()
    n_images, seed = int(n_images), int(seed)
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    params = {"n_images": n_images, "seed": seed, "image_size": IMAGE_SIZE, "format_version": FORMAT_VERSION}
    marker = root / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == params:
                return root
        except json.JSONDecodeError:
            pass
    root.parent.mkdir(parents=True, exist_ok=True)
    for tmp in stale_temporaries(root.parent, f".{root.name}.*-*"):  # left by a killed run
        shutil.rmtree(tmp, ignore_errors=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "flickr30k_images").mkdir(parents=True)

    indices = range(n_images)
    if progress if progress is not None else n_images >= 500:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="Drawing the embedded dataset", unit="img")
    csv_lines = ["image_name| comment_number| comment"]
    karpathy, boxes, scenes = [], {}, {}
    for i in indices:
        rng = np.random.default_rng([seed, i])
        scene, image = _draw_scene(rng)
        captions, used = make_captions(scene, rng)
        name = f"mini{i:05d}.jpg"
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {name} as JPEG")
        (tmp / "flickr30k_images" / name).write_bytes(jpeg.tobytes())
        csv_lines += [f"{name}| {k}| {c}" for k, c in enumerate(captions)]
        sentences = [{"tokens": tokenize(c), "raw": c, "imgid": i, "sentid": 5 * i + k} for k, c in enumerate(captions)]
        karpathy.append(
            {
                "filename": name,
                "imgid": i,
                "split": _split_of(i, n_images),
                "sentids": [5 * i + k for k in range(5)],
                "sentences": sentences,
            }
        )
        boxes[name] = [
            {"word": w, "box": obj["box"]} for obj, words in zip(scene["objects"], used) for w in sorted(words)
        ]
        scenes[name] = scene
    (tmp / "results.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    _write_json(tmp / "dataset_flickr30k.json", {"images": karpathy, "dataset": "mini_flickr"})
    _write_json(tmp / "boxes.json", boxes)
    _write_json(tmp / "scenes.json", {"seed": seed, "scenes": scenes})
    _write_json(tmp / MARKER, params)  # last: its presence means complete

    if root.exists():
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        os.rename(root, old)
        os.rename(tmp, root)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, root)
    return root


def write_stand_in_images(folder, names, seed=0, size=(120, 160)):
    """JPEG files of drawn scenes under the given file ``names`` (e.g. real Flickr30k names),
    ``size`` (height, width) like a small photo: the images of a stand-in dataset that pairs
    real captions with pictures we may ship. Returns the folder."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        _, image = _draw_scene(rng)
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        (folder / name).write_bytes(encoded.tobytes())
    return folder


# ----------------------------------------------------------------------------- scene accuracy

_COLOUR_OF = {w: c for c, choices in COLOUR_WORDS.items() for w, _ in choices}
_SHAPE_OF = {w: k for k, choices in NOUNS.items() for w, _ in choices}
_RELATION_OF = {  # phrase (tokens) -> relation; "next to" and "beside": side by side in a row
    tuple(w.split()): "beside" if w in ("next to", "beside") else rel
    for rel, choices in RELATIONS.items()
    for w, _ in choices
}


def load_scenes(root):
    """What was drawn in each image of the embedded dataset in ``root``, ``{image: scene}``
    (``scenes.json``); ``{}`` for any other dataset."""
    path = Path(root) / "scenes.json"
    return json.loads(path.read_text(encoding="utf-8"))["scenes"] if path.is_file() else {}


def parse_caption(text):
    """The objects a caption names and the relation it states: ``(mentions, relation)``.

    mentions: one (colour, shape) per shape word, in order, with the grammar's synonyms mapped
    to the scene's names ("violet" -> purple, "box" -> square); colour is None when the word
    before the shape is not a colour. relation: 'left', 'right', 'above', 'below' or 'beside'
    between the first two mentions, or None.
    """
    words = tokenize(text)
    mentions, relation = [], None
    for i, word in enumerate(words):
        if word in _SHAPE_OF:
            mentions.append((_COLOUR_OF.get(words[i - 1]) if i else None, _SHAPE_OF[word]))
        elif len(mentions) == 1 and relation is None:
            for phrase, rel in _RELATION_OF.items():
                if tuple(words[i : i + len(phrase)]) == phrase:
                    relation = rel
                    break
    return mentions, relation


def _relation_holds(relation, first, second, scene):
    """Is ``relation`` of the scene's objects that match mentions first and second true?"""
    objects = {(o["colour"], o["kind"]): o for o in scene["objects"]}
    a, b = objects.get(first), objects.get(second)
    if a is None or b is None or a is b:
        return False
    if relation == "beside":
        return scene["axis"] == "row"
    return _relation(a, b, scene["axis"]) == relation


def scene_scores(captions, scenes):
    """How right captions are about the scenes drawn: ``{"exact", "object_precision",
    "object_recall", "relation", "by_objects"}``.

    captions: ``{image: caption}``; scenes: ``load_scenes`` (every image of ``captions`` in it).
    exact: share of images whose caption names exactly the scene's multiset of (colour, shape)
    pairs. object_precision / object_recall: (colour, shape) mentions that are in the scene,
    over all mentions / over all objects drawn. relation: share of two-object scenes, among
    those whose caption states a relation, where it names both objects and the relation is
    true (None if no caption states one). by_objects: exact per number of objects drawn.
    """
    from collections import Counter

    hits, mentioned, drawn, relations = 0, 0, 0, []
    by_objects = {}  # number of objects drawn -> [caption names exactly them?]
    for image, caption in captions.items():
        scene = scenes[image]
        truth = Counter((o["colour"], o["kind"]) for o in scene["objects"])
        mentions, relation = parse_caption(caption)
        said = Counter(mentions)
        right = sum((said & truth).values())
        hits, mentioned, drawn = hits + right, mentioned + sum(said.values()), drawn + sum(truth.values())
        by_objects.setdefault(str(len(scene["objects"])), []).append(said == truth)
        if len(scene["objects"]) == 2 and relation is not None:
            relations.append(len(mentions) >= 2 and _relation_holds(relation, mentions[0], mentions[1], scene))
    return {
        "exact": float(np.mean([right for scenes_of_n in by_objects.values() for right in scenes_of_n])),
        "object_precision": hits / mentioned if mentioned else 0.0,
        "object_recall": hits / drawn,
        "relation": float(np.mean(relations)) if relations else None,
        "by_objects": {n: float(np.mean(v)) for n, v in sorted(by_objects.items())},
    }
