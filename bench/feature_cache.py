"""Feature cache: extracting features vs. loading them from the cache, same images, one run.

    python bench/feature_cache.py [--images N] [--encoder NAME]

Prints the two timings and, as its last line, a JSON object ending with "ratio"
(extraction time / cache-hit time). The encoder runs with random weights (no download):
the cost of a forward pass does not depend on the weights' values.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helpers  # noqa: E402, F401  (quiets TensorFlow first)
from helpers import features, seed_everything  # noqa: E402
from helpers.data import load_flickr30k, make_mini_flickr  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--encoder", default="mobilenet_v3_small", choices=features.ENCODERS)
    parser.add_argument("--size", type=int, default=96, help="input side in pixels")
    args = parser.parse_args()
    seed_everything(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_mini_flickr(Path(tmp) / "mini", n_images=args.images, progress=False)
        paths = load_flickr30k(root).drop_duplicates("image").path.tolist()
        size = 224 if args.encoder == "vgg16" else args.size
        encoder = features.build_encoder(args.encoder, weights=None, input_size=size)
        cache = Path(tmp) / "cache"
        start = time.perf_counter()
        computed = features.extract_features(encoder, paths, cache_dir=cache, progress=False)
        extract_s = time.perf_counter() - start
        start = time.perf_counter()
        cached = features.extract_features(encoder, paths, cache_dir=cache, progress=False)
        hit_s = time.perf_counter() - start
        assert (computed == cached).all()
    print(f"{len(paths)} images, {args.encoder} at {size} px: extract {extract_s:.2f} s, cache hit {hit_s:.4f} s")
    print(
        json.dumps(
            {
                "images": len(paths),
                "encoder": args.encoder,
                "size": size,
                "extract_s": round(extract_s, 4),
                "cache_hit_s": round(hit_s, 5),
                "ratio": round(extract_s / hit_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
