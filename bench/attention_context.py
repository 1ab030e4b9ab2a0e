"""Attention train step with each word's context z_t = sum_i alpha_ti a_i written as an einsum
vs. as a batched matrix product, same model, same batches.

    python bench/attention_context.py [--steps N] [--images-per-batch B] [--rounds R]

``AdditiveAttention`` computes the context as (N, 1, L) @ (N, L, F); the einsum
"nl,nlf->nf" gives the same numbers, but its gradient, taken once per unrolled step, runs
through TensorFlow's generic einsum kernels. Each side runs in a process of its own, the two in
turn for R rounds, and each reports its median (``attention_steps`` says why).
Prints a line per side and, last, a JSON object ending with "ratio" (einsum's time per step /
the matrix product's).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attention_steps import embedded_training_data, median_ms_by_side, ms_per_step  # noqa: E402  (this folder's)

import helpers  # noqa: E402  (quiets TensorFlow first)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images-per-batch", type=int, default=16, help="images per batch (the default's 16)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per side, the two sides in turn")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, in this process
    args = parser.parse_args()
    if args.side:
        print(json.dumps(time_side(args.side, args.steps, args.images_per_batch)))
        return
    shared = ["--steps", str(args.steps), "--images-per-batch", str(args.images_per_batch)]
    ms, first = median_ms_by_side(__file__, SIDES, shared, args.rounds)
    batch = f"{args.images_per_batch} images and {first['matmul']['captions']} captions a batch"
    print(f"attention train step, {batch}, {first['matmul']['tokens']} tokens, ", end="")
    print(f"{args.steps} steps, median of {args.rounds} processes each")
    print(f"  the context as an einsum:          {ms['einsum']:.0f} ms per step")
    print(f"  the context as a batched product:  {ms['matmul']:.0f} ms per step")
    result = {"images_per_batch": args.images_per_batch, "einsum_ms": round(ms["einsum"], 1)}
    result.update(matmul_ms=round(ms["matmul"], 1), ratio=round(ms["einsum"] / ms["matmul"], 2))
    print(json.dumps(result))


SIDES = ("einsum", "matmul")


def time_side(side, steps, images_per_batch):
    """{"ms": mean time per train step, "captions": a batch's, "tokens"} of one side."""
    from keras import ops

    from helpers.attention import AdditiveAttention, ShowAttendTell
    from helpers.pipeline import caption_pipeline

    class EinsumAttention(AdditiveAttention):
        def call(self, features, keys, h):
            _, alpha = super().call(features, keys, h)
            return ops.einsum("nl,nlf->nf", alpha, features), alpha

    helpers.seed_everything(0)
    # a warm-up batch, then the timed ones
    pixels, vocab, tokens, captions_of, order = embedded_training_data(images_per_batch * (steps + 1))
    batches = caption_pipeline(
        pixels, order, captions_of, tokens, images_per_batch, pad_to=tokens.shape[1], captions_per_image=2
    )
    batches = list(batches(order))
    model = ShowAttendTell(len(vocab))
    if side == "einsum":
        model.attention = EinsumAttention(model.attention_dim, name="attention")
    ms = ms_per_step(model, batches)
    return {"ms": ms, "captions": int(batches[0][2].shape[0]), "tokens": int(tokens.shape[1])}


if __name__ == "__main__":
    main()
