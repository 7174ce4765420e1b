"""``depth-node models``: the model cards depth_node ships, where each expects its weights, and downloads."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_node.errors import DepthNodeError, ModelLoadError
from depth_node.estimators.card import ModelCard, load_card
from depth_node.paths import models_dir

EPILOG = """examples:
  depth-node models                                         # list cards, their output space and weights
  depth-node models download depth_anything_v2_small        # fetch the weights (needs internet)
  depth-node run --ros-args -p model_card:=depth_anything_v2_metric_indoor_small"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model cards and download their weights", description=__doc__.split(":", 1)[1].strip(),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", choices=("list", "download"), default="list", help="list (default) or download")
    p.add_argument("name", nargs="?", help="card name (for download)")
    p.add_argument("--revision", default=None, help="Hugging Face revision (branch, tag or commit) to download")
    p.add_argument("--folder", type=Path, default=None, help="card folder (default: the package's models/)")
    p.set_defaults(func=run)


def weights_present(card: ModelCard) -> bool:
    """A weights file exists, or a weights folder holds a transformers (config.json) or diffusers (unet/) model."""
    path = card.weights
    if path.is_file():
        return True
    return (path / "config.json").is_file() or (path / "unet" / "config.json").is_file()


def cards(folder: Path) -> list[tuple[Path, ModelCard | ModelLoadError]]:
    found: list[tuple[Path, ModelCard | ModelLoadError]] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            found.append((path, load_card(path)))
        except ModelLoadError as exc:
            found.append((path, exc))
    return found


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    folder = args.folder or models_dir()
    if args.action == "list":
        listed = cards(folder)
        if not listed:
            print(f"no model cards in {folder}")
            return 0
        width = max(len(p.stem) for p, _ in listed)
        for path, card in listed:
            if isinstance(card, ModelLoadError):
                print(f"{path.stem:<{width}}  INVALID CARD: {card}")
                continue
            state = "ready" if weights_present(card) else "missing"
            source = f"  (download: depth-node models download {card.name})" if state == "missing" and card.extra.get("hf_repo") else ""
            print(f"{card.name:<{width}}  {card.family:<18} {card.output.describe():<22} {card.license[:24]:<24} {state:<7} {card.weights}{source}")
        return 0
    if not args.name:
        raise DepthNodeError("download needs a card name: depth-node models download NAME (see: depth-node models)")
    matches = [c for _, c in cards(folder) if not isinstance(c, ModelLoadError) and c.name == args.name]
    if not matches:
        raise DepthNodeError(f"no model card named {args.name!r} in {folder} (see: depth-node models)")
    return download(matches[0], args.revision)


def download(card: ModelCard, revision: str | None = None) -> int:
    if weights_present(card):
        print(f"{card.name}: weights already at {card.weights}")
        return 0
    repo = card.extra.get("hf_repo")
    if not repo:
        raise DepthNodeError(f"card {card.name} names no hf_repo: get its weights as its description says and put them at {card.weights}")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=repo, revision=revision, local_dir=str(card.weights))
    except Exception as exc:  # offline, hub errors, disk errors: one clear message whatever the cause
        raise DepthNodeError(
            f"could not download {repo} from Hugging Face ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            f"If this machine is offline, download it elsewhere (huggingface-cli download {repo} --local-dir DIR) "
            f"and copy DIR to {card.weights}"
        ) from None
    print(f"{card.name}: downloaded {repo} to {card.weights}")
    return 0
