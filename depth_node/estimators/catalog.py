"""The model cards a folder holds (the package's models/ by default), whether their weights are there, and
fetching the weights of a card that names a Hugging Face repository."""

from __future__ import annotations

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
    """One line per card in ``folder``: name, family, output space, licence, weights ready or missing, where."""
    listed = cards(folder)
    if not listed:
        return [f"no model cards in {folder}"]
    width = max(len(p.stem) for p, _ in listed)
    lines = []
    for path, card in listed:
        if isinstance(card, ModelLoadError):
            lines.append(f"{path.stem:<{width}}  INVALID CARD: {card}")
            continue
        state = "ready" if weights_present(card) else "missing"
        source = f"  (download: depth-node models download {card.name})" if state == "missing" and card.extra.get("hf_repo") else ""
        lines.append(f"{card.name:<{width}}  {card.family:<18} {card.output.describe():<22} {card.license[:24]:<24} {state:<7} "
                     f"{card.weights}{source}")
    return lines


def find(folder: Path, name: str) -> ModelCard:
    """The valid card named ``name`` in ``folder``."""
    matches = [c for _, c in cards(folder) if not isinstance(c, ModelLoadError) and c.name == name]
    if not matches:
        raise DepthNodeError(f"no model card named {name!r} in {folder} (see: depth-node models)")
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
