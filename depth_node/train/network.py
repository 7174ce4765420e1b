"""The embedded default model: a small encoder–decoder CNN that predicts metric depth.

Encoder: MobileNetV2-style inverted residual blocks down to 1/32 of the input, plus a global-context branch
(image-level pooled features broadcast back: monocular depth needs scene-level cues such as room size).
Decoder: U-Net upsampling with skip connections to 1/2, a 3×3 head, bilinear ×2. The head predicts log-depth;
the network outputs metres = exp(log-depth), so its ONNX export is a plain metric-depth model
(card: ``space: depth``, ``invariance: metric``). Any input size that is a multiple of 32 works.

:class:`TeacherInitNet` is the other student: the teacher's own network (FastDepth, read from its int8 TFLite file
by :mod:`depth_node.train.tflite_import`, dequantized to float) fine-tuned here, so it starts from everything the
teacher learnt on NYU Depth v2 instead of from random weights.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

LOG_DEPTH_OFFSET = math.log(2.0)  # the head starts near 2 m: a typical indoor distance


def zero_init(layer: nn.Module) -> nn.Module:
    """``layer`` with weight and bias set to zero: a new output that starts at nothing, so the network it joins
    starts as it was (a correction, a gate's even blend, a log-scale of 0)."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1×1 expand → 3×3 depthwise (stride) → 1×1 project; residual when shapes allow (MobileNetV2)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(conv_bn(cin, hidden, 1), conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  conv_bn(hidden, cout, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def stage(cin: int, cout: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(InvertedResidual(cin, cout, 2), *[InvertedResidual(cout, cout, 1) for _ in range(blocks - 1)])


class UpBlock(nn.Module):
    """×2 bilinear, concatenate the skip, two 3×3 convs (the second depthwise-separable)."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.fuse = conv_bn(cin + skip, cout, 3)
        self.refine = nn.Sequential(conv_bn(cout, cout, 3, groups=cout), conv_bn(cout, cout, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.fuse(torch.cat([x, skip], dim=1))
        return x + self.refine(x)


class TinyDepthNet(nn.Module):
    """(N, 3, H, W) normalized RGB (ImageNet mean/std), H and W multiples of 32 → (N, 1, H, W) metres."""

    def __init__(self, widths: tuple[int, ...] = (16, 24, 40, 80, 128), blocks: tuple[int, ...] = (2, 2, 3, 2),
                 in_channels: int = 3, decoder: tuple[int, int, int, int] = (64, 48, 32, 24)) -> None:
        super().__init__()
        w, d = widths, decoder
        self.stem = conv_bn(in_channels, w[0], 3, 2)                                    # 1/2
        self.enc = nn.ModuleList(stage(w[i], w[i + 1], blocks[i]) for i in range(4))   # 1/4 … 1/32
        self.context = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(w[4], w[4], 1), nn.ReLU(inplace=True))
        self.up = nn.ModuleList([UpBlock(w[4], w[3], d[0]), UpBlock(d[0], w[2], d[1]), UpBlock(d[1], w[1], d[2]), UpBlock(d[2], w[0], d[3])])
        self.head = nn.Conv2d(d[3], 1, 3, padding=1)

    def log_depth(self, x: torch.Tensor) -> torch.Tensor:
        """Natural log of metres at the input resolution."""
        return self.log_depth_and_pooled(x)[0]

    def log_depth_and_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`log_depth`, and the encoder's deepest features averaged over the image, (N, widths[-1])."""
        size = x.shape[-2:]
        skips = [self.stem(x)]
        for block in self.enc:
            skips.append(block(skips[-1]))
        y = skips[-1] + self.context(skips[-1])
        pooled = skips[-1].mean(dim=(2, 3))
        for block, skip in zip(self.up, reversed(skips[:-1])):
            y = block(y, skip)
        y = self.head(y) + LOG_DEPTH_OFFSET
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False), pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_depth(x))

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [*self.stem.parameters(), *self.enc.parameters()]


class TeacherInitNet(nn.Module):
    """A float TFLite graph as a student: (N, 3, H, W) normalized RGB (``mean``/``std``) → (N, 1, H, W) metres.

    The input is mapped back to the graph's own range (FastDepth: RGB in [0, 1]). The graph's last activation (a
    ReLU: depth ≥ 0) is replaced by a smooth one, softplus with β = 10 (differs from ReLU by < 5e-6 m above 1 m),
    plus 1 mm, so that log-depth — what the losses see — is finite and has a gradient everywhere.
    """

    def __init__(self, graph: nn.Module, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        self.graph = graph
        low, high = graph.input_range
        self.register_buffer("in_scale", torch.tensor(std).view(1, 3, 1, 1) / (high - low), persistent=False)
        self.register_buffer("in_shift", (torch.tensor(mean).view(1, 3, 1, 1) - low) / (high - low), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.graph(x * self.in_scale + self.in_shift, final_activation=False)
        return F.softplus(y, beta=10.0) + 1e-3

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's last feature map (what the graph's last convolution reads)."""
        return self.graph(x * self.in_scale + self.in_shift, features=True)

    def log_depth(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.forward(x))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The layers before the graph's first upsampling (FastDepth: the MobileNet encoder)."""
        first_resize = next((n for n, step in enumerate(self.graph.steps) if step.op.startswith("RESIZE")), len(self.graph.steps))
        names = [step.module for step in self.graph.steps[:first_resize] if step.module]
        return [p for name in names for p in self.graph.layers[name].parameters()]


class ResidualRefiner(nn.Module):
    """A pretrained depth network plus a correction branch that starts at zero: more capacity without losing the start.

    The branch predicts a log-depth correction added to the base's. Its last layer starts at zero, so before training
    the pair predicts exactly what the base does; the fine-tuning can then learn what the base cannot (rendered scenes'
    layouts) in new weights instead of overwriting the base's (what it knows of real rooms). Two branches:

    - ``"tiny"``: a TinyDepthNet from random weights (0.6 M parameters) with 4 input channels, the normalized RGB and
      the base's log-depth minus its image mean (so it sees shape, not the scale the base guessed);
    - ``"teacher"``: a copy of the base network itself (its pretrained features: it learns like a fine-tuning) whose
      last convolution is replaced by a new 3×3 head on the decoder's last feature map.

    ``(N, 3, H, W)`` normalized RGB → ``(N, 1, H, W)`` metres, like the base.
    """

    def __init__(self, base: nn.Module, branch: str = "tiny", widths: tuple[int, ...] = (16, 24, 40, 80, 128)) -> None:
        super().__init__()
        if branch not in ("tiny", "teacher"):
            raise ValueError(f"the correction branch is 'tiny' or 'teacher', got {branch!r}")
        self.base = base
        self.kind = branch
        if branch == "tiny":
            self.branch = TinyDepthNet(widths, in_channels=4)
            head = self.branch.head
        else:
            self.branch = copy.deepcopy(base)
            head = self.head = nn.Conv2d(base.graph.feature_channels, 1, 3, padding=1)
        zero_init(head)

    def correction(self, x: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """The branch's log-depth correction at the input resolution."""
        if self.kind == "teacher":
            return F.interpolate(self.head(self.branch.features(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)
        shape = base - base.mean(dim=(2, 3), keepdim=True)
        return self.branch.log_depth(torch.cat([x, shape], dim=1)) - LOG_DEPTH_OFFSET  # the branch's head adds the offset

    def log_depth(self, x: torch.Tensor) -> torch.Tensor:
        base = self.base.log_depth(x)
        return base + self.correction(x, base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_depth(x))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The base network's encoder (``--freeze-encoder`` keeps what it learnt; the branch always trains)."""
        return self.base.encoder_parameters()

    def fixed_parameters(self) -> list[nn.Parameter]:
        """What ``--freeze-base`` holds: the base network (the branch alone trains)."""
        return list(self.base.parameters())


class ImageGate(nn.Module):
    """One blend logit per image: strided 3×3 convolutions (each halves the size) with ReLU, averaged over the image, and
    a linear layer that starts at zero. ``(N, C, H, W)`` → logit ``(N, 1, 1, 1)`` and the pooled features
    ``(N, widths[-1])``.

    No batch norm on purpose: a per-image decision must not depend on which other images share the batch, and batch
    norm's running statistics (a moving average over the last few mixed real/rendered batches) kept moving the
    per-pixel gate's choices after its weights had stopped (docs/benchmarks.md)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (16, 32, 48, 64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in zip((in_channels, *widths[:-1]), widths):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = zero_init(nn.Linear(widths[-1], 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.features(x).mean(dim=(2, 3))
        return self.head(pooled)[:, :, None, None], pooled


GATES = ("pixel", "image")


class ExpertBlend(nn.Module):
    """Two depth networks and a small gate that blends their log-depths, per pixel or per image.

    ``base`` is the network that knows real rooms (the teacher's, kept as it is); ``expert`` one trained for what the
    base cannot do (e.g. rendered scenes with exact metric depth: ``depth-node train --mix 0,0,1``). The gate, a narrow
    TinyDepthNet (0.15 M parameters), sees the normalized RGB, each network's log-depth minus its image mean (their
    shapes) and the difference of the two (where and by how much they disagree), and predicts a logit *g* per pixel:

        log-depth = base + sigmoid(g) · (expert − base)

    so each pixel's depth lies between the two networks' (in log space). The gate's head starts at zero: an even blend.
    ``gate="image"`` (:class:`ImageGate`, 0.08 M parameters) predicts one *g* per image instead and, in use (eval
    mode, the ONNX export), *chooses* a network's map: the expert's where g > 0, else the base's — never a half-way
    mix of two shapes, which no alignment undoes — shifted to the soft blend's image-mean log-depth, so the metres
    change smoothly with the share when the choice flips between frames of a video. In training it blends softly
    (sigmoid) so the depth loss reaches it, and ``losses.router_loss`` teaches it which network has the lower error on
    each image; without batch norm, the choice cannot drift with batch statistics.
    With ``global_scale`` the gate also predicts one log-scale per image from its deepest features (a linear layer that
    starts at zero) added to the blend: metres for cameras and scenes where both networks get the scale wrong (neither
    learnt the TUM Kinect's desks); it changes no aligned error. Training the gate alone (``--freeze-base``) decides
    where each network is trusted without changing either. Cost: both networks run on every frame.
    ``(N, 3, H, W)`` normalized RGB → ``(N, 1, H, W)`` metres.
    """

    def __init__(self, base: nn.Module, expert: nn.Module, global_scale: bool = False, gate: str = "pixel") -> None:
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"the gate is one of {', '.join(GATES)}, got {gate!r}")
        self.base = base
        self.expert = expert
        self.per_image = gate == "image"
        if self.per_image:
            widths: tuple[int, ...] = (16, 32, 48, 64, 64)
            self.gate: nn.Module = ImageGate(6, widths)
        else:
            widths = (8, 16, 24, 32, 64)
            self.gate = TinyDepthNet(widths, in_channels=6, decoder=(32, 24, 16, 16))
            zero_init(self.gate.head)
        self.scale = zero_init(nn.Linear(widths[-1], 1)) if global_scale else None  # reads the gate's pooled deepest features

    def logit_and_scale(self, x: torch.Tensor, base: torch.Tensor, expert: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gate's logit of the expert's share of each pixel (or image: ``(N, 1, 1, 1)``), and the log-scale added to
        each image, (N, 1, 1, 1) (0 without ``global_scale``)."""
        shapes = [base - base.mean(dim=(2, 3), keepdim=True), expert - expert.mean(dim=(2, 3), keepdim=True), expert - base]
        gate_input = torch.cat([x, *shapes], dim=1)
        if self.per_image:
            logit, pooled = self.gate(gate_input)
        else:
            logit, pooled = self.gate.log_depth_and_pooled(gate_input)
            logit = logit - LOG_DEPTH_OFFSET  # TinyDepthNet's head adds it
        scale = self.scale(pooled)[:, :, None, None] if self.scale is not None else torch.zeros_like(base[:, :, :1, :1])
        return logit, scale

    def weight_and_scale(self, x: torch.Tensor, base: torch.Tensor, expert: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The expert's share of each pixel (or image), in (0, 1), and the log-scale (:meth:`logit_and_scale`); in use the
        per-image gate takes the map of the network whose share is > 0.5 (:meth:`blend`)."""
        logit, scale = self.logit_and_scale(x, base, expert)
        return torch.sigmoid(logit), scale

    def weight(self, x: torch.Tensor, base: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        """The expert's share of each pixel, in (0, 1) (``(N, 1, 1, 1)`` with the per-image gate)."""
        return self.weight_and_scale(x, base, expert)[0]

    def log_depth(self, x: torch.Tensor) -> torch.Tensor:
        return self.blend(x)[0]

    def blend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The blended log-depth, each network's log-depth, and the gate's logit (what the per-image gate's router loss
        reads: ``losses.router_loss``)."""
        base, expert = self.base.log_depth(x), self.expert.log_depth(x)
        logit, scale = self.logit_and_scale(x, base, expert)
        blended = base + torch.sigmoid(logit) * (expert - base)
        if self.per_image and not self.training:
            # in use the per-image gate *chooses* a network's map (a half-way mix of two shapes is what neither
            # learnt), at the soft blend's level (its image-mean log-depth): when the choice flips between two frames
            # of a video the metres move with the share, smoothly, instead of jumping by the two networks' scale ratio
            chosen = torch.where(logit > 0, expert, base)
            blended = chosen - chosen.mean(dim=(2, 3), keepdim=True) + blended.mean(dim=(2, 3), keepdim=True)
        return blended + scale, base, expert, logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_depth(x))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Both networks' encoders (``--freeze-encoder``; the gate always trains)."""
        return [*self.base.encoder_parameters(), *self.expert.encoder_parameters()]

    def fixed_parameters(self) -> list[nn.Parameter]:
        """What ``--freeze-base`` holds: both networks (the gate alone trains)."""
        return [*self.base.parameters(), *self.expert.parameters()]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
