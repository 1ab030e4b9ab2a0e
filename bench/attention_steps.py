"""What the attention benchmarks share: the embedded data as ``helpers.training`` hands it to
the input pipeline, the time of a train step, and each side timed in a process of its own.

A process per side, because in one process, of two models of the same code trained in
alternation, the one built earlier ran 1.35-1.56x slower (cause not found), and a benchmark
that times its sides one after the other in one process moved its ratio by about 7% with
their order.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def embedded_training_data(n_images):
    """``n_images`` of the embedded dataset, drawn afresh, as ``helpers.training`` hands them to
    ``helpers.pipeline.caption_pipeline``: (pixels (N, S, S, 3), vocabulary, tokens (C, 30),
    {image row: caption rows}, the image rows in order)."""
    import numpy as np

    from helpers.data import load_flickr30k, load_image, make_mini_flickr
    from helpers.pipeline import captions_by_image
    from helpers.text import Vocabulary, encode_captions

    with tempfile.TemporaryDirectory() as tmp:
        df = load_flickr30k(make_mini_flickr(Path(tmp) / "mini", n_images=n_images, progress=False))
        images = df.drop_duplicates("image").reset_index(drop=True)
        pixels = np.stack([load_image(p) for p in images.path])
    vocab = Vocabulary(df.caption)
    tokens = encode_captions(vocab, df.caption, 30)
    captions_of = captions_by_image(df.image.map({name: i for i, name in enumerate(images.image)}).to_numpy())
    return pixels, vocab, tokens, captions_of, np.arange(len(images))


def ms_per_step(model, batches):
    """Mean milliseconds per train step (Adam) of ``model`` over ``batches`` after the first,
    which builds the weights and traces the graph."""
    import keras

    from helpers.teacher_forcing import make_train_step

    step = make_train_step(model, keras.optimizers.Adam(1e-3))
    first, *timed = batches
    step(*first)
    start = time.perf_counter()
    for batch in timed:
        loss, _, _ = step(*batch)
    float(loss)  # wait for the last step to finish
    return (time.perf_counter() - start) / len(timed) * 1000


def median_ms_by_side(script, sides, args, rounds):
    """Run ``script --side S *args`` in a fresh process per side, the sides in turn, ``rounds``
    times. Each run's last line is a JSON object with "ms". Returns ({side: median ms}, {side:
    its first run's object})."""
    runs = {side: [] for side in sides}
    for _ in range(rounds):
        for side in sides:
            done = subprocess.run([sys.executable, script, "--side", side, *args], capture_output=True)
            if done.returncode:
                sys.exit(done.stderr.decode())
            runs[side].append(json.loads(done.stdout.decode().strip().splitlines()[-1]))
    return {side: statistics.median(r["ms"] for r in runs[side]) for side in sides}, {s: r[0] for s, r in runs.items()}
