"""The project's own depth network: a TFLite network imported as float torch, fed normalized RGB, giving metres.

:class:`ImportedNet` wraps a graph read by :mod:`depth_node.train.tflite_import` (FastDepth: MobileNet encoder,
NNConv5 decoder, from ``../shared/models/fastdepth``). :func:`load_depth_network` rebuilds the network behind a card:
a TFLite card itself, or a card with a ``network:`` block (written by ``depth-node export`` of a TFLite card and by
``depth-node train``)::

    network:
      tflite: fastdepth            # the TFLite card whose graph and weights the network starts from
      weights: model.safetensors   # optional, beside the card: fine-tuned weights replacing the file's own
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn import functional as F

from depth_node.estimators.card import load_card
from depth_node.paths import models_dir, resolve_card

# the input normalization of every network this project exports (ImageNet's): cards say so in input.mean / input.std
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ImportedNet(nn.Module):
    """A float TFLite graph: (N, 3, H, W) normalized RGB (``MEAN``/``STD``) → (N, 1, H, W) metres.

    The input is mapped back to the graph's own range (FastDepth: RGB in [0, 1]). The graph's last activation (a
    ReLU: depth ≥ 0) is replaced by a smooth one, softplus with β = 10 (differs from ReLU by < 5e-6 m above 1 m),
    plus 1 mm, so that log-depth — what the training losses see — is finite and has a gradient everywhere.
    """

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph
        low, high = graph.input_range
        self.register_buffer("in_scale", torch.tensor(STD).view(1, 3, 1, 1) / (high - low), persistent=False)
        self.register_buffer("in_shift", (torch.tensor(MEAN).view(1, 3, 1, 1) - low) / (high - low), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.graph(x * self.in_scale + self.in_shift, final_activation=False)
        return F.softplus(y, beta=10.0) + 1e-3

    def log_depth(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.forward(x))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The layers before the graph's first upsampling (FastDepth: the MobileNet encoder)."""
        first_resize = next((n for n, step in enumerate(self.graph.steps) if step.op.startswith("RESIZE")), len(self.graph.steps))
        names = [step.module for step in self.graph.steps[:first_resize] if step.module]
        return [p for name in names for p in self.graph.layers[name].parameters()]


def import_tflite(card_spec: str) -> tuple[ImportedNet, Any]:
    """The float network of a TFLite card (a path or a name in models/) and the card (:class:`ModelCard`)."""
    from depth_node.train.tflite_import import load_tflite_graph

    card = load_card(resolve_card(card_spec))
    if card.weights.suffix != ".tflite":
        raise ValueError(f"{card.path}: network.tflite names a TFLite card; {card.name} has weights {card.weights.name}")
    if not card.weights.is_file():
        raise FileNotFoundError(f"{card.weights} not found (model card {card.path}): the network is imported from that TFLite file")
    return ImportedNet(load_tflite_graph(card.weights)).eval(), card


def tflite_card_of(card_path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The TFLite card behind a card — itself, or the one its ``network:`` block names (a card file beside it, else a
    name in models/) — and the card as a mapping."""

    path = resolve_card(str(card_path))
    try:
        card = yaml.safe_load(path.read_text())
    except OSError as error:
        raise FileNotFoundError(f"{card_path}: {error.strerror}; give a model card (a path, or a name in models/)") from None
    if isinstance(card, dict) and str(card.get("weights", "")).endswith(".tflite"):
        return path, card
    block = card.get("network") if isinstance(card, dict) else None
    if not isinstance(block, dict) or "tflite" not in block:
        raise ValueError(f"{path} is neither a TFLite card nor a card with a 'network:' block (from depth-node export of a "
                         "TFLite card, or depth-node train): only those networks can be fine-tuned here")
    beside = path.parent / str(block["tflite"])
    return (beside if beside.is_file() else resolve_card(str(block["tflite"]))), card


def card_reference(card_path: Path, folder: Path) -> str:
    """How a card written in ``folder`` names ``card_path``: its name when it is one of the package's models/ (so the
    reference holds wherever the package is installed), else a path relative to ``folder``."""

    card_path = Path(card_path).resolve()
    if card_path.parent == models_dir().resolve():
        return card_path.stem
    return os.path.relpath(card_path, Path(folder).resolve())


def load_depth_network(card_path: str | Path) -> tuple[ImportedNet, dict[str, Any]]:
    """The torch network behind a card (eval mode, no gradients) and the card as a mapping: a TFLite card's network
    as float, or the network a card's ``network:`` block names, with its fine-tuned weights when it lists some."""

    path = resolve_card(str(card_path))
    tflite, card = tflite_card_of(path)
    network, _ = import_tflite(str(tflite))
    weights_name = (card.get("network") or {}).get("weights")
    if weights_name:
        from safetensors.torch import load_file

        weights = path.parent / weights_name
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found: the fine-tuned weights of {card_path}")
        state = load_file(str(weights))
        missing = sorted(set(network.state_dict()) - set(state))
        if missing:
            raise ValueError(f"{weights} does not hold every weight of the network in {card_path}: missing {missing[:5]}")
        network.load_state_dict(state)
    return network.eval().requires_grad_(False), card


def input_block(graph_stride: int, source_rules: Any) -> dict[str, Any]:
    """The ``input:`` of a card for an exported network that keeps its source card's geometry: a square fixed size
    becomes a stretched long side (so test-time scales can change it), any other size stays fixed."""
    rules: dict[str, Any] = {"mean": list(MEAN), "std": list(STD), "interpolation": source_rules.interpolation}
    size = source_rules.size
    if size is not None and size[0] == size[1]:
        return {"long_side": int(size[0]), "multiple_of": graph_stride, "keep_aspect": False, **rules}
    if size is not None:
        return {"size": [int(size[0]), int(size[1])], **rules}
    if source_rules.long_side is None:
        raise ValueError("the source card gives neither input.size nor input.long_side: say the network's input size in it")
    return {"long_side": source_rules.long_side, "multiple_of": max(graph_stride, source_rules.multiple_of),
            "keep_aspect": source_rules.keep_aspect, **rules}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
