"""Attention train step with each word's context z_t = sum_i alpha_ti a_i written as an einsum
vs. as a batched matrix product, same model, same batches.

    python bench/attention_context.py [--steps N] [--images-per-batch B] [--rounds R]

``AdditiveAttention`` computes the context as (N, 1, L) @ (N, L, F); the einsum
"nl,nlf->nf" gives the same numbers, but its gradient, taken once per unrolled step, runs
through TensorFlow's generic einsum kernels. Each side runs in a process of its own, the two in
turn for R rounds, and each reports its median: in one process, of two models of the same code
trained in alternation, the one built earlier ran 1.35-1.56x slower.
Prints a line per side and, last, a JSON object ending with "ratio" (einsum's time per step /
the matrix product's).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from captions_per_image import embedded_training_data  # noqa: E402  (this folder's: the same batches)

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
    runs = {side: [] for side in SIDES}
    for _ in range(args.rounds):
        for side in SIDES:
            command = [sys.executable, __file__, "--side", side, "--steps", str(args.steps)]
            done = subprocess.run([*command, "--images-per-batch", str(args.images_per_batch)], capture_output=True)
            if done.returncode:
                sys.exit(done.stderr.decode())
            runs[side].append(json.loads(done.stdout.decode().strip().splitlines()[-1]))
    ms = {side: statistics.median(r["ms"] for r in runs[side]) for side in SIDES}
    first = runs["matmul"][0]
    print(f"attention train step, {args.images_per_batch} images and {first['captions']} captions a batch, ", end="")
    print(f"{first['tokens']} tokens, {args.steps} steps, median of {args.rounds} processes each")
    print(f"  the context as an einsum:          {ms['einsum']:.0f} ms per step")
    print(f"  the context as a batched product:  {ms['matmul']:.0f} ms per step")
    result = {"images_per_batch": args.images_per_batch, "einsum_ms": round(ms["einsum"], 1)}
    result.update(matmul_ms=round(ms["matmul"], 1), ratio=round(ms["einsum"] / ms["matmul"], 2))
    print(json.dumps(result))


SIDES = ("einsum", "matmul")


def time_side(side, steps, images_per_batch):
    """{"ms": mean time per train step, "captions", "tokens"} of one side, after a warm-up step."""
    import keras
    from keras import ops

    from helpers.attention import AdditiveAttention, ShowAttendTell
    from helpers.pipeline import caption_pipeline
    from helpers.teacher_forcing import make_train_step

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
    first, *timed = list(batches(order))
    model = ShowAttendTell(len(vocab))
    if side == "einsum":
        model.attention = EinsumAttention(model.attention_dim, name="attention")
    step = make_train_step(model, keras.optimizers.Adam(1e-3))
    step(*first)  # warm-up: builds weights, traces the graph
    start = time.perf_counter()
    for batch in timed:
        loss, _, _ = step(*batch)
    float(loss)  # wait for the last step to finish
    ms = (time.perf_counter() - start) / len(timed) * 1000
    return {"ms": ms, "captions": int(first[2].shape[0]), "tokens": int(tokens.shape[1])}


if __name__ == "__main__":
    main()
