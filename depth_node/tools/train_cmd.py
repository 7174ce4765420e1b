"""``depth-node train``: fine-tune a model card's network on real RGB-D frames (metric depth), reproducibly from a
seed. Writes the weights, an ONNX export checked against torch, a model card, a training log and a loss plot into OUT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depth_node.train.trainer import TrainConfig, train

EPILOG = """examples:
  depth-node train out/ft                                   # the default's network, 1000 steps on ../shared/data/train
  depth-node train out/quick --steps 100 --limit 40         # a quick look
  depth-node train out/site --init fastdepth --train-dir /data/my_site --freeze-encoder
then: depth-node eval BAG -p model_card:=out/ft/card.yaml
--init takes a TFLite card (imported as float), the shipped default or a card written by an earlier run.
--train-dir: a folder with index.csv as ../shared/data/train (split rgbd: rgb, depth PNG, depth_units_per_m).
never train on ../shared/data/rgbd_dev: it is for measurement (this command does not read it)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a model's network on RGB-D frames (CPU is fine)",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--init", default="default", metavar="CARD",
                   help="the card whose network is fine-tuned: a path or a name in models/ (default: default)")
    p.add_argument("--train-dir", type=Path, default=Path("../shared/data/train"),
                   help="folder with index.csv, as ../shared/data/train (default)")
    p.add_argument("--freeze-encoder", action="store_true", help="train the decoder only (keeps the encoder as it was)")
    add_recipe_arguments(p, steps=1000, log_every=100)
    p.add_argument("--limit", type=int, default=0, help="use at most this many training frames (smoke tests)")
    p.set_defaults(func=run)


def add_recipe_arguments(p: argparse.ArgumentParser, steps: int, log_every: int) -> None:
    """The training recipe's options (train and adapt): steps, batch, learning rate, seed, threads, log interval."""
    p.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate: 5 %% warm-up, then cosine decay (default 3e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores)")
    p.add_argument("--log-every", type=int, default=log_every, help=f"steps between loss / held-out lines (default {log_every})")


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    cfg = TrainConfig(out=args.out, train_dir=args.train_dir, init=args.init, freeze_encoder=args.freeze_encoder, steps=args.steps,
                      batch=args.batch, lr=args.lr, seed=args.seed, threads=args.threads, limit=args.limit, log_every=args.log_every)
    cfg.check()  # before loading anything
    result = train(cfg, say=lambda line: print(line, file=sys.stderr, flush=True))
    final = result.log[-1] if result.log else {}
    print(f"trained in {result.seconds / 60:.1f} min; ONNX matches torch within {result.onnx_max_rel_diff:.1e}; "
          f"final loss {final.get('loss', float('nan')):.4f}")
    print(f"wrote {args.out}/model.onnx, card.yaml, model.safetensors, train_log.csv, loss.png")
    return 0
