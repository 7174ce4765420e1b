"""``depth-node train``: train the embedded default model (TinyDepthNet) from real RGB-D frames, teacher-labelled frames and
synthetic scenes, reproducibly from a seed. Writes weights, an ONNX export checked against torch, a model card,
a training log and a loss plot into OUT.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

EPILOG = """examples:
  depth-node train out/train                                # the shipped recipe (about 35 min on 2 CPU cores)
  depth-node train out/quick --steps 300 --synthetic 100    # a quick look
  depth-node train out/t --seed 1 --threads 2 --train-dir /data/my_rgbd_index_folder
  depth-node train out/stage2 --init out/stage1/card.yaml --mix 0.2,0.4,0.4 --keep 1   # go on from an earlier run
  depth-node train out/blend --init teacher --expert out/rendered/card.yaml --freeze-base --keep 1   # teacher + expert, gate trained
then: depth-node eval BAG -p model_card:=out/train/card.yaml
never train on ../shared/data/rgbd_dev: it is for measurement (this command does not read it)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the embedded default depth model (CPU is fine)",
                       description=__doc__.split(":", 1)[1].strip(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--train-dir", type=Path, default=Path("../shared/data/train"),
                   help="folder with index.csv (splits rgbd / unlabeled), as ../shared/data/train (default)")
    p.add_argument("--teacher", default="fastdepth", help="model card labelling the unlabelled frames (default: fastdepth)")
    p.add_argument("--init", default="scratch", metavar="{scratch,teacher,CARD}",
                   help="scratch: TinyDepthNet from random weights (default); teacher: fine-tune the teacher's own network "
                        "(its TFLite weights dequantized to float), which starts from what it learnt on NYU Depth v2; "
                        "CARD: the card.yaml of an earlier run, to go on from its network and weights with other options "
                        "(a curriculum's next stage; the card records both stages)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="train the decoder only (with --init teacher: keeps the teacher's encoder as it learnt on NYU)")
    p.add_argument("--refiner", action="store_true",
                   help="with --init teacher: add a correction branch (0.6 M parameters, its output starts at zero) that sees "
                        "the RGB and the network's log-depth, so new scenes are learnt in new weights; slower to run")
    p.add_argument("--refiner-branch", choices=("tiny", "teacher"), default="tiny",
                   help="with --refiner: tiny = a TinyDepthNet from random weights (default); teacher = a copy of the teacher's "
                        "network with a new last layer (pretrained features, 1.35 M parameters more)")
    p.add_argument("--expert", default="", metavar="CARD",
                   help="with --init teacher: the card.yaml of an earlier run (e.g. trained on rendered scenes alone, --mix 0,0,1) "
                        "whose network runs beside the teacher's; a small gate (starts at an even blend) learns per "
                        "pixel (or per image: --gate) how much of each to take. Both networks run on every frame")
    p.add_argument("--gate-scale", action="store_true",
                   help="with --expert: the gate also predicts one log-scale per image (starts at 0), so metres can be "
                        "learnt from the metric labels where both networks get the scale wrong; aligned errors unchanged")
    p.add_argument("--gate", choices=("pixel", "image"), default="pixel",
                   help="with --expert: pixel = a share of each network per pixel (default); image = one network "
                        "chosen per image by a 0.08 M-parameter classifier without batch norm, trained (besides the "
                        "depth loss on its soft blend) to pick the network with the lower error on each training image: "
                        "each frame gets one network's map (at the soft blend's mean log-depth, so video does not "
                        "jump when the choice flips), and the choice does not drift with batch statistics")
    p.add_argument("--freeze-base", action="store_true",
                   help="with --refiner: train the correction branch only, the teacher's network stays as it is; with "
                        "--expert: train the gate only, both networks stay as they are")
    p.add_argument("--keep", type=float, default=0.0,
                   help="with --init teacher: weight of a loss keeping the student's predictions on real images close to the "
                        "initial network's (learning without forgetting), so fine-tuning on a few rooms does not lose the "
                        "rest (default 0 = off; 1 weighs it as the label loss)")
    p.add_argument("--keep-clean", action="store_true",
                   help="with --keep: the initial network labels the clean view of each real sample (flip, crop and "
                        "CutMix, no colour, blur or relighting), so the student learns to match it under those changes")
    p.add_argument("--relight", type=float, default=0.0, metavar="P",
                   help="share of training samples relit (exposure, light pools, shadows; clipped like a sensor), so "
                        "bright or dark regions are not read as far or near (default 0 = off)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights with this decay per step (e.g. 0.998) and "
                        "validate and ship the average instead of the last step's weights (default 0 = off)")
    p.add_argument("--mix", default="0.2,0.4,0.4", metavar="REAL,TEACHER,SYNTHETIC",
                   help="share of each source in a batch: real RGB-D, teacher-labelled, synthetic; normalized, 0 leaves a "
                        "source out (default 0.2,0.4,0.4)")
    p.add_argument("--store", choices=("float32", "float16"), default="float32",
                   help="dtype of the stored weights (safetensors and ONNX): float16 halves the files (the network still "
                        "computes in float32; outputs move by ~1e-4 relative, up to ~2e-3 at worst); default float32")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps (default 3000)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate: 5 %% linear warm-up, then cosine decay (default 2e-3 from scratch, 3e-4 from the teacher or a card)")
    p.add_argument("--size", default="256x192", help="training resolution WIDTHxHEIGHT, multiples of 32 (default 256x192)")
    p.add_argument("--synthetic", type=int, default=600, help="synthetic training frames to render (default 600)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores)")
    p.add_argument("--log-every", type=int, default=100, help="steps between loss/validation lines (default 100)")
    p.add_argument("--limit", type=int, default=0, help="use at most this many real and unlabelled frames (smoke tests)")
    p.set_defaults(func=run)
    add_confidence_parser(sub)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    from depth_node.train.trainer import TrainConfig, train

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 256x192, got {args.size!r}") from None
    if width % 32 or height % 32 or width <= 0 or height <= 0:
        raise ValueError(f"--size sides must be positive multiples of 32 (the network's stride), got {args.size}")
    if args.keep < 0:
        raise ValueError(f"--keep is a loss weight, ≥ 0; got {args.keep}")
    if args.keep_clean and not args.keep > 0:
        raise ValueError("--keep-clean changes what the keep loss sees: give it a weight too, e.g. --keep 1")
    if not 0 <= args.relight <= 1:
        raise ValueError(f"--relight is a probability in [0, 1]; got {args.relight}")
    if not 0 <= args.ema < 1:
        raise ValueError(f"--ema is a decay per step in [0, 1), e.g. 0.998; got {args.ema}")
    if args.steps <= 0 or args.batch <= 1:
        raise ValueError("--steps must be positive and --batch at least 2")
    cfg = TrainConfig(out=args.out, train_dir=args.train_dir, teacher_card=args.teacher, init=args.init, freeze_encoder=args.freeze_encoder, refiner=args.refiner, refiner_branch=args.refiner_branch, freeze_base=args.freeze_base, expert=args.expert, gate_scale=args.gate_scale, gate=args.gate, store=args.store, keep=args.keep, keep_clean=args.keep_clean, relight=args.relight, ema=args.ema, steps=args.steps, batch=args.batch,
                      lr=args.lr if args.lr is not None else (2e-3 if args.init == "scratch" else 3e-4), width=width, height=height, synthetic=args.synthetic, seed=args.seed, threads=args.threads,
                      limit_real=args.limit, limit_unlabeled=args.limit, log_every=args.log_every, mix=parse_mix(args.mix))
    cfg.check()  # before minutes of loading data
    result = train(cfg, say=lambda line: print(line, file=sys.stderr, flush=True))
    final = result.log[-1] if result.log else {}
    print(f"trained in {result.seconds / 60:.1f} min; ONNX matches torch within {result.onnx_max_rel_diff:.1e}; "
          f"final loss {final.get('loss', float('nan')):.4f}")
    print(f"wrote {args.out}/model.onnx, card.yaml, model.safetensors, train_log.csv, loss.png")
    return 0


def parse_mix(text: str) -> dict[str, float]:
    """``--mix REAL,TEACHER,SYNTHETIC`` as the trainer's source shares; raises ValueError saying what is wrong."""
    try:
        shares = [float(v) for v in text.split(",")]
    except ValueError:
        shares = []
    if len(shares) != 3 or not all(math.isfinite(v) and v >= 0 for v in shares) or sum(shares) <= 0:
        raise ValueError(f"--mix takes three shares ≥ 0, not all 0, for real RGB-D, teacher-labelled and synthetic samples, "
                         f"e.g. 0.2,0.4,0.4; got {text!r}")
    return dict(zip(("real", "teacher", "synthetic"), shares))


CONFIDENCE_EPILOG = """examples:
  depth-node train-confidence out/conf --model models/default.yaml      # the shipped head (about 6 min on 2 CPU cores)
  depth-node train-confidence out/conf_t6 --model out/t6/card.yaml --steps 300 --synthetic 100   # a quick look
then: depth-node eval BAG -p model_card:=out/conf/card.yaml   (the report's sparsification plot and AUSE)
the depth output is the input model's, unchanged (checked); rgbd_dev is never read"""


def add_confidence_parser(sub: argparse._SubParsersAction) -> None:
    from depth_node.train import confidence_trainer

    p = sub.add_parser("train-confidence", help="train a confidence head for a model made by depth-node train",
                       description=confidence_trainer.__doc__.split(":", 1)[1].strip(), epilog=CONFIDENCE_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--model", type=Path, default=Path("models/default.yaml"),
                   help="card of a model written by depth-node train, with its .safetensors beside the ONNX file "
                        "(default: models/default.yaml)")
    p.add_argument("--train-dir", type=Path, default=Path("../shared/data/train"),
                   help="folder with index.csv, as ../shared/data/train (default)")
    p.add_argument("--steps", type=int, default=1200, help="optimizer steps (default 1200)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3; warm-up then cosine decay)")
    p.add_argument("--synthetic", type=int, default=800, help="synthetic frames to render, of seeds the depth training never used (default 800)")
    p.add_argument("--relight", type=float, default=0.5, metavar="P", help="share of samples relit, as in depth-node train (default 0.5)")
    p.add_argument("--target", choices=("metric", "scale", "affine"), default="affine",
                   help="the error the head learns to expect: of the depth as published (metric), after a per-image scale "
                        "(scale) or after a per-image least-squares scale and shift, the evaluation's aligned AbsRel (affine, default)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores)")
    p.add_argument("--log-every", type=int, default=100, help="steps between loss/validation lines (default 100)")
    p.add_argument("--limit", type=int, default=0, help="use at most this many real frames (smoke tests)")
    p.set_defaults(func=run_confidence)


def run_confidence(args: argparse.Namespace, ros_args: list[str]) -> int:
    from depth_node.train.confidence_trainer import ConfidenceTrainConfig, train_confidence

    if args.steps <= 0 or args.batch <= 1:
        raise ValueError("--steps must be positive and --batch at least 2")
    if not 0 <= args.relight <= 1:
        raise ValueError(f"--relight is a probability in [0, 1]; got {args.relight}")
    if not args.model.is_file():
        raise FileNotFoundError(f"--model {args.model}: no such card (a card written by depth-node train, e.g. models/default.yaml)")
    cfg = ConfidenceTrainConfig(out=args.out, model_card=args.model, train_dir=args.train_dir, steps=args.steps, batch=args.batch,
                                lr=args.lr, synthetic=args.synthetic, relight=args.relight, target=args.target, seed=args.seed, threads=args.threads,
                                limit_real=args.limit, log_every=args.log_every)
    result = train_confidence(cfg, say=lambda line: print(line, file=sys.stderr, flush=True))
    final = result.log[-1] if result.log else {}
    print(f"trained in {result.seconds / 60:.1f} min; depth output matches the input model within {result.depth_max_rel_diff:.1e}; "
          f"final loss {final.get('loss', float('nan')):.4f}")
    print(f"wrote {args.out}/model.onnx, card.yaml, confidence_head.safetensors, confidence_log.csv")
    return 0
