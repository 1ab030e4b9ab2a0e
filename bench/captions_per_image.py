"""Attention train step with every caption of each image vs. K of them, same images.

    python bench/captions_per_image.py [--steps N] [--captions-per-image K] [--images-per-batch B] [--rounds R]

An epoch has one step per B images either way (the CNN sees each image once), so the ratio
of the times per step is the ratio of the epochs' times. The decoder's work grows with the
captions in a batch (B x 5 or B x K, each unrolled over the data's longest caption), the
CNN's does not: the ratio says how much of a step the decoder was. Both sides train the
same model from the same initial weights on batches from ``helpers.pipeline.caption_pipeline``,
as ``helpers.training`` builds them, each in a process of its own, the two in turn for R
rounds, and each reports its median. Prints a line per side and, last, a JSON object ending
with "ratio" (all captions' time per step / K captions').
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attention_steps import embedded_training_data, median_ms_by_side, ms_per_step  # noqa: E402  (this folder's)

import helpers  # noqa: E402  (quiets TensorFlow first)

SIDES = ("every", "some")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--captions-per-image", type=int, default=2)
    parser.add_argument("--images-per-batch", type=int, default=16, help="images per batch (the default's 16)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per side, the two sides in turn")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, in this process
    args = parser.parse_args()
    k, per_batch = args.captions_per_image, args.images_per_batch
    if args.side:
        print(json.dumps(time_side(0 if args.side == "every" else k, args.steps, per_batch)))
        return
    shared = ["--steps", str(args.steps), "--captions-per-image", str(k), "--images-per-batch", str(per_batch)]
    ms, first = median_ms_by_side(__file__, SIDES, shared, args.rounds)
    print(f"attention train step, {per_batch} images a batch, {first['every']['tokens']} tokens, ", end="")
    print(f"{args.steps} steps, median of {args.rounds} processes each")
    print(f"  every caption ({first['every']['captions']} a batch): {ms['every']:.0f} ms per step")
    print(f"  {k} per image ({first['some']['captions']} a batch): {ms['some']:.0f} ms per step")
    result = {"images_per_batch": per_batch, "captions_per_image": k, "every_caption_ms": round(ms["every"], 1)}
    result.update(some_captions_ms=round(ms["some"], 1), ratio=round(ms["every"] / ms["some"], 2))
    print(json.dumps(result))


def time_side(k, steps, images_per_batch):
    """{"ms": mean time per train step, "captions": a batch's, "tokens"} with ``k`` captions per
    image (0: all of them)."""
    from helpers.attention import ShowAttendTell
    from helpers.pipeline import caption_pipeline

    helpers.seed_everything(0)  # the same data and initial weights for both sides
    # a warm-up batch, then the timed ones
    pixels, vocab, tokens, captions_of, order = embedded_training_data(images_per_batch * (steps + 1))
    batches = caption_pipeline(
        pixels, order, captions_of, tokens, images_per_batch, pad_to=tokens.shape[1], captions_per_image=k
    )
    batches = list(batches(order))
    ms = ms_per_step(ShowAttendTell(len(vocab)), batches)
    return {"ms": ms, "captions": int(batches[0][2].shape[0]), "tokens": int(tokens.shape[1])}


if __name__ == "__main__":
    main()
