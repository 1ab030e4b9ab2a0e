"""Train a captioner (or notebook 07's text reader) from the command line, with checkpoints,
resume and test metrics.

    python -m helpers.train --model show_tell --out runs/show_tell
    python -m helpers.train --model show_tell --out runs/show_tell --resume
    python -m helpers.train --model attention --out runs/attention
    python -m helpers.train --model crnn --out runs/crnn
    python -m helpers.train --model show_tell --data /data/flickr30k --encoder resnet50 \\
        --epochs 20 --strategy mirrored --out runs/flickr30k
    python -m helpers.train --model show_tell --data /data/flickr30k --encoder resnet50 \\
        --fine-tune 10 --epochs 5 --out runs/flickr30k_fine_tuned

A thin layer: the flags become a ``helpers.config.TrainConfig`` and ``helpers.training``
does the work (notebooks call it directly). DIR/checkpoint.npz is replaced atomically after
every epoch; ``--resume`` continues after the last finished epoch (with the same settings)
and ends with the same metrics as an uninterrupted run; ``--overwrite`` replaces a run in DIR,
which is otherwise refused, as is a second run into DIR while one trains there
(``helpers.run_folder``). DIR/metrics.json holds BLEU-1..4 and CIDEr on the test
split for greedy and beam search (of the epoch with the best validation CIDEr, kept in
DIR/best_checkpoint.npz), the number of epochs, each epoch's training and validation scores,
and the share of generated captions that are not copied verbatim from a training caption;
for ``--model attention`` on data with boxes (the embedded ``boxes.json``, or Flickr30k
Entities' ``Annotations/`` and ``Sentences/``) also ``grounding``, ``grounding_uniform``,
``grounding_random_object`` and ``attention_correctness`` (``helpers.attention.grounding``);
for ``--model crnn`` the test ``cer`` and ``word_accuracy``.
"""

import argparse
import sys
from pathlib import Path

from . import one_line
from .checkpoints import CheckpointError
from .config import MODELS, ConfigError, TrainConfig


def build_parser():
    p = argparse.ArgumentParser(prog="python -m helpers.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: helpers.data.find_dataset())")
    p.add_argument(
        "--encoder",
        default="small_cnn",
        help="small_cnn (trained end to end, no download) or a keras.applications encoder from helpers.features",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: 10 for the captioners, 6 for crnn")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per batch, each with its captions (default 16); text lines for crnn (default 64)",
    )
    p.add_argument(
        "--captions-per-image",
        type=int,
        default=None,
        metavar="K",
        help="captioners: each epoch, each image brings K of its captions, drawn afresh each epoch "
        "(0: all of them; default 2 for attention, whose unrolled decoder makes every caption costly, "
        "0 for show_tell)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beam-width", type=int, default=3)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--min-count", type=int, default=5, help="rarer words become <unk>")
    p.add_argument("--max-len", type=int, default=30, help="tokens per caption, <start> and <end> included")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="input side: 96 for small_cnn (the default), 224 for a fine-tuned keras.applications encoder",
    )
    p.add_argument(
        "--encoder-weights",
        default="imagenet",
        help="weights of a keras.applications encoder: imagenet (downloaded on first use), none "
        "(random), or a weights file",
    )
    p.add_argument(
        "--fine-tune",
        type=int,
        default=0,
        metavar="N",
        help="--model show_tell with a keras.applications encoder: train its top N weighted layers "
        "with the decoder, at --fine-tune-rate times the learning rate, on pixels instead of "
        "cached features (default 0: frozen)",
    )
    p.add_argument(
        "--fine-tune-rate",
        type=float,
        default=0.1,
        help="--fine-tune: the encoder's learning rate as a share of the decoder's (default 0.1)",
    )
    p.add_argument(
        "--cnn-blocks",
        type=int,
        default=None,
        help="small_cnn's stride-2 blocks: 96 px images give a 12 x 12 grid with 3 (the default), 6 x 6 with 4",
    )
    p.add_argument(
        "--cnn-top-convs",
        type=int,
        default=None,
        help="small_cnn: stride-1 3 x 3 blocks after the stride-2 ones, each widening what a grid cell sees "
        "(default: 1 for show_tell, so that a cell sees a whole shape; 0 for attention, whose maps it blurs)",
    )
    p.add_argument(
        "--image-at-output",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--model show_tell: the image also enters the output layer at every word (m-RNN's multimodal "
        "layer; on by default; --no-image-at-output: the output layer sees only the LSTM's state, as in the paper)",
    )
    p.add_argument(
        "--where-into-lstm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--model attention: its LSTM also reads where each step's attention looked, the weighted (x, y) "
        "of the grid (on by default; --no-where-into-lstm: the LSTM reads only the words)",
    )
    p.add_argument(
        "--attention-penalty",
        type=float,
        default=0.0,
        help="lambda of the doubly stochastic attention penalty (--model attention; 0, the default, "
        "is off: on the embedded data lambda = 1 blurs the maps, see notebook 06)",
    )
    p.add_argument(
        "--paper-decoder",
        action="store_true",
        help="--model attention: also start the LSTM from the mean feature and feed it the context, "
        "as Xu et al. do (the default lets the image reach each word only through its attention)",
    )
    p.add_argument(
        "--lines",
        type=int,
        default=24000,
        help="--model crnn: training lines to render (validation and test get 1/24 and 1/12 as many)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        metavar="N",
        help="captioners: stop after N epochs without a better validation CIDEr (default: train every epoch; "
        "either way the test scores are those of the best epoch)",
    )
    p.add_argument("--strategy", choices=("default", "mirrored"), default="default")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resume", action="store_true", help="continue the run in --out, with the same settings")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (a folder holding one is refused otherwise)"
    )
    return p


def config_from_args(argv=None):
    """(parser, ``TrainConfig``) of the command line ``argv``; a bad value exits with one line."""
    parser = build_parser()
    try:
        return parser, TrainConfig(**vars(parser.parse_args(argv)))
    except ConfigError as err:
        parser.error(err.for_command_line())


def summary(config, metrics):
    """The one line printed at the end of a run."""
    where = config.out / "metrics.json"
    if config.model == "crnn":
        b = metrics["prefix_beam"]
        return (
            f"test CER greedy {metrics['cer']:.4f}, prefix beam {b['cer']:.4f}; lines read exactly "
            f"{metrics['word_accuracy']:.1%} / {b['word_accuracy']:.1%} -> {where}"
        )
    g, b = metrics["greedy"], metrics["beam"]
    grounding = (
        f"; grounding {metrics['grounding']:.2f} (uniform {metrics['grounding_uniform']:.2f}, "
        f"random object {metrics['grounding_random_object']:.2f})"
        if "grounding" in metrics
        else ""
    )
    scene = (
        f"; scene exact greedy {metrics['scene']['greedy']['exact']:.0%}, beam {metrics['scene']['beam']['exact']:.0%}"
        if "scene" in metrics
        else ""
    )
    best = f" (epoch {metrics['best_epoch']} of {metrics['epochs']}, the best by validation CIDEr)"
    best = best if metrics["best_epoch"] != metrics["epochs"] else ""
    return (
        f"test{best} BLEU-4 greedy {g['bleu4']:.3f}, beam {b['bleu4']:.3f}; CIDEr greedy {g['cider']:.3f}, "
        f"beam {b['cider']:.3f}; novel captions {metrics['novel_fraction']:.0%}{scene}{grounding} -> {where}"
    )


def main(argv=None):
    parser, config = config_from_args(argv)
    from .training import train_captioner, train_text_reader  # TensorFlow: only once the flags are good

    try:
        metrics, _, _ = (train_text_reader if config.model == "crnn" else train_captioner)(config)
    except ConfigError as err:
        parser.exit(2, f"error: {err.for_command_line()}\n")
    except (CheckpointError, OSError, ValueError, RuntimeError) as err:
        parser.exit(2, f"error: {one_line(err)}\n")
    print(summary(config, metrics))


if __name__ == "__main__":
    sys.exit(main())
