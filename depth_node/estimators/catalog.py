"""The model cards a folder holds (the package's models/ by default), whether their weights are there, and
fetching the weights of a card that names a Hugging Face repository."""

from __future__ import annotations

import difflib
from pathlib import Path

from depth_node.errors import DepthNodeError, ModelLoadError
from depth_node.estimators.card import ModelCard, load_card


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


def describe(folder: Path) -> list[str]:
    """Per card in ``folder``: the name ``model_card`` takes (the file's, without .yaml), family, output space, weights
    ready or missing and where; then its full licence, and its own name where that differs from the file's."""
    listed = cards(folder)
    if not listed:
        return [f"no model cards in {folder}"]
    width = max(len(p.stem) for p, _ in listed)
    lines = [f"{'model_card':<{width}}  {'family':<18} {'output':<22} {'weights':<7} where"]
    for path, card in listed:
        if isinstance(card, ModelLoadError):
            lines.append(f"{path.stem:<{width}}  INVALID CARD: {card}")
            continue
        state = "ready" if weights_present(card) else "missing"
        source = f"  (download: depth-node models download {path.stem})" if state == "missing" and card.extra.get("hf_repo") else ""
        lines.append(f"{path.stem:<{width}}  {card.family:<18} {card.output.describe():<22} {state:<7} {card.weights}{source}")
        named = f"; the card calls itself {card.name}" if card.name != path.stem else ""
        lines.append(f"{'':<{width}}  licence: {card.license}{named}")
    return lines


def find(folder: Path, name: str) -> ModelCard:
    """The valid card ``name`` in ``folder``: its file name (what ``model_card`` takes) or the card's own name."""
    listed = [(p, c) for p, c in cards(folder) if not isinstance(c, ModelLoadError)]
    matches = [c for p, c in listed if name in (p.stem, c.name)]
    if not matches:
        close = difflib.get_close_matches(name, [p.stem for p, _ in listed], n=1)
        raise DepthNodeError(f"no model card named {name!r} in {folder}" + (f" — did you mean {close[0]!r}?" if close else "")
                             + " (see: depth-node models)")
    return matches[0]


def download(card: ModelCard, revision: str | None = None) -> int:
    """Fetch the weights of ``card`` from its ``hf_repo`` into its weights folder (nothing when present)."""
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
