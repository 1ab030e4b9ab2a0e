"""Beam search: the whole batch at once vs. one image at a time, and beam vs. greedy, one run.

    python bench/beam_search.py [--images N] [--beam-width K] [--run-dir DIR]

Decodes the same images three ways with ``helpers.decoding``: beam search over the batch,
beam search image by image, and greedy over the batch. Uses the model trained by notebook
04 (``runs/show_tell``) when it is there, else a Show-and-Tell model of the same size with
random weights (it never emits ``<end>``, so every caption runs to ``--max-len``: the
slowest case). Prints the timings and, as its last line, a JSON object with "ratio"
(per-image time / batched time) and "beam_over_greedy" (batched beam / batched greedy).
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helpers  # noqa: E402  (quiets TensorFlow first)


def best(fn, repeats):
    """Fastest of ``repeats`` runs (seconds) and the last result: the least disturbed timing."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--beam-width", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-dir", type=Path, default=helpers.PROJECT_ROOT / "runs" / "show_tell")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from helpers.captioner import ShowAndTell
    from helpers.decoding import beam_search, greedy_decode
    from helpers.training import load_trained

    helpers.seed_everything(0)
    try:
        model, vocab = load_trained(args.run_dir)
        source = f"trained model in {helpers.shown_path(args.run_dir)}"
        size, vocab_size, start_id, end_id = model.image_size, len(vocab), vocab.start_id, vocab.end_id
    except FileNotFoundError:
        size, vocab_size, start_id, end_id = 96, 72, 1, 2  # the embedded dataset's vocabulary size
        model = ShowAndTell(vocab_size, image_as="state")
        model(tf.zeros((1, size, size, 3)), tf.constant([0]), tf.constant([[start_id, end_id]]))
        source = "untrained model of the same size (run notebook 04 to bench the trained one)"
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (args.images, size, size, 3)), tf.float32)
    if args.run_dir.is_dir() and (args.run_dir / "metrics.json").is_file():
        from helpers.data import find_dataset, load_flickr30k, load_image

        df = load_flickr30k(find_dataset(verbose=False))
        paths = df[df.split == "test"].drop_duplicates("image").path[: args.images]
        images = tf.constant(np.stack([load_image(p, size=(size, size)) for p in paths]), tf.float32)
    state = model.initial_state(images)
    k, max_len = args.beam_width, args.max_len

    def batched():
        return beam_search(model.step, state, start_id, end_id, k, max_len)

    def one_by_one():
        return [
            beam_search(model.step, tuple(s[i : i + 1] for s in state), start_id, end_id, k, max_len)[0]
            for i in range(args.images)
        ]

    def greedy():
        return greedy_decode(model.step, state, start_id, end_id, max_len)

    for fn in (batched, one_by_one, greedy):
        fn()  # warm-up: traces the step function for each batch shape
    batched_s, together = best(batched, args.repeats)
    single_s, alone = best(one_by_one, args.repeats)
    greedy_s, _ = best(greedy, args.repeats)
    same = all([h[0] for h in a] == [h[0] for h in b] for a, b in zip(together, alone))
    steps = float(np.mean([len(h[0][0]) for h in together]))
    print(f"{source}; vocabulary {vocab_size}, {args.images} images, beam width {k}, mean caption {steps:.1f} tokens")
    print(f"beam, batched:      {batched_s * 1000:8.1f} ms")
    print(f"beam, one by one:   {single_s * 1000:8.1f} ms   ({single_s / batched_s:.1f}x the batched time)")
    print(f"greedy, batched:    {greedy_s * 1000:8.1f} ms   (batched beam takes {batched_s / greedy_s:.2f}x greedy)")
    print(f"same hypotheses batched and alone: {same}")
    print(
        json.dumps(
            {
                "model": source.split(" model")[0],
                "images": args.images,
                "beam_width": k,
                "batched_ms": round(batched_s * 1000, 1),
                "one_by_one_ms": round(single_s * 1000, 1),
                "greedy_ms": round(greedy_s * 1000, 1),
                "beam_over_greedy": round(batched_s / greedy_s, 2),
                "same_hypotheses": same,
                "ratio": round(single_s / batched_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
