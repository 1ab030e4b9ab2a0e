"""Real Flickr30k scale on a CPU: what the course's data path costs before any training.

    python bench/real_scale.py [--captions FILE] [--limit N] [--feature-images N] [--encoder NAME]

On all 155,070 real captions of the Karpathy split (../shared/data/flickr30k/captions_karpathy.token)
and one stand-in image file per image (31,014 copies of one small JPEG: the loader and the
pipeline never decode them), it times, with the peak memory of each step as tracemalloc sees it
(Python, NumPy and pandas allocations; TensorFlow's own C++ buffers are not counted, the peak
resident memory of the whole run, printed at the end, includes them):
``load_flickr30k``, the vocabulary of the training split, and one epoch of the input pipeline
(``caption_pipeline`` over pooled 2,048-d features). Then, on ``--feature-images`` drawn
images at 224 px, feature extraction against a cache hit, per image (random weights: the cost
of a forward pass does not depend on their values). The last line is one JSON object whose
"ratio" is extraction time / cache-hit time per image.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import helpers  # noqa: E402, F401  (quiets TensorFlow first)
from helpers import seed_everything  # noqa: E402

DEFAULT_CAPTIONS = ROOT.parent / "shared" / "data" / "flickr30k" / "captions_karpathy.token"


def measured(label, work, rows):
    """Run work(); record its seconds and peak Python memory under ``label``; return its result."""
    tracemalloc.start()
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rows[label] = {"seconds": round(seconds, 3), "peak_mb": round(peak, 1)}
    print(f"{label:<34} {seconds:8.2f} s   peak {peak:8.1f} MB", flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=Path, default=DEFAULT_CAPTIONS, help="a .token file of real captions")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images (quick runs)")
    parser.add_argument("--feature-images", type=int, default=256)
    parser.add_argument("--encoder", default="mobilenet_v3_small")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not args.captions.is_file():
        parser.exit(2, f"error: caption file {args.captions} not found (give --captions)\n")
    import numpy as np

    from helpers.data import load_flickr30k
    from helpers.features import build_encoder
    from helpers.mini_flickr import write_stand_in_images
    from helpers.text import Vocabulary, encode_captions

    seed_everything(0)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "flickr30k"
        images_dir = root / "flickr30k_images"
        lines = args.captions.read_text(encoding="utf-8").splitlines()
        names = list(dict.fromkeys(line.split("#", 1)[0] for line in lines))[: args.limit]
        keep = set(names)
        root.mkdir()
        (root / "results_20130124.token").write_text(
            "\n".join(line for line in lines if line.split("#", 1)[0] in keep) + "\n", encoding="utf-8"
        )
        sample = write_stand_in_images(Path(tmp) / "sample", ["x.jpg"]) / "x.jpg"
        images_dir.mkdir()
        data = sample.read_bytes()
        for name in names:
            (images_dir / name).write_bytes(data)
        print(f"{len(names):,} images; stand-in files written; timing:", flush=True)

        df = measured("load_flickr30k", lambda: load_flickr30k(root), rows)
        train = df[df.split == "train"]
        if train.empty:
            parser.exit(2, f"error: none of these {len(names):,} images is in the training split; use more (--limit)\n")
        vocab = measured("vocabulary (train split, min 5)", lambda: Vocabulary(train.caption, min_count=5), rows)

        def one_epoch():
            from helpers.pipeline import caption_pipeline, captions_by_image

            images = df.drop_duplicates("image").reset_index(drop=True)
            row_of = {n: i for i, n in enumerate(images.image)}
            tokens = encode_captions(vocab, train.caption, 30)
            captions_of = captions_by_image(train.image.map(row_of).to_numpy())
            features = np.zeros((len(images), 2048), np.float32)  # pooled ResNet50-sized features
            batches = caption_pipeline(features, np.array(list(captions_of)), captions_of, tokens, args.batch_size)
            return sum(1 for _ in batches(np.random.default_rng(0).permutation(len(captions_of))))

        n_batches = measured("input pipeline, one epoch", one_epoch, rows)
        print(f"  ({len(train):,} training captions, {n_batches:,} batches of {args.batch_size} images)")

        drawn = write_stand_in_images(
            Path(tmp) / "drawn", [f"{i}.jpg" for i in range(args.feature_images)], size=(375, 500)
        )
        paths = sorted(str(p) for p in drawn.glob("*.jpg"))
        encoder = build_encoder(args.encoder, weights=None, input_size=224)
        cache = Path(tmp) / "cache"
        extract(encoder, paths[:2], None)  # warm up: the first call traces the model
        measured("features: extraction", lambda: extract(encoder, paths, cache), rows)
        measured("features: cache hit", lambda: extract(encoder, paths, cache), rows)
    per_image = {k: rows[f"features: {k}"]["seconds"] / len(paths) for k in ("extraction", "cache hit")}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"per image at 224 px ({args.encoder}): extraction {per_image['extraction'] * 1e3:.2f} ms, "
        f"cache hit {per_image['cache hit'] * 1e3:.3f} ms; peak resident memory {rss:,.0f} MB"
    )
    print(
        json.dumps(
            {
                "images": len(names),
                "captions": len(df),
                "steps": rows,
                "peak_rss_mb": round(rss),
                "extract_ms_per_image": round(per_image["extraction"] * 1e3, 4),
                "cache_hit_ms_per_image": round(per_image["cache hit"] * 1e3, 5),
                "ratio": round(per_image["extraction"] / per_image["cache hit"], 1),
            }
        )
    )


def extract(encoder, paths, cache):
    from helpers.features import extract_features

    return extract_features(encoder, paths, cache_dir=cache, progress=False)


if __name__ == "__main__":
    main()
