"""Import a quantized TFLite convolutional network as a float torch module: to export it and to fine-tune it.

FastDepth in ``../shared/models/fastdepth`` is an int8 TFLite file; its weights are the best indoor prior this
project can get without a model hub. This module reads its graph and dequantizes every weight
(``float = scale × int``, per output channel; biases at ``input scale × weight scale``) into ordinary
``nn.Conv2d`` layers, so ``depth-node export`` can write it as a float ONNX file and ``depth-node train`` can
fine-tune it.

Supported operators: QUANTIZE, DEQUANTIZE, PAD, CONV_2D, DEPTHWISE_CONV_2D (depth multiplier 1), ADD,
RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR. Anything else raises ``ValueError`` naming the operator.

Two facts are inferred rather than read, because LiteRT's Python interpreter does not expose builtin options:

- **activations**: a quantized output whose zero point is the type's minimum holds no negative value, i.e. the
  int8 network clamps at 0 there; the float graph applies ReLU (ReLU6 when the range ends at 6), which
  reproduces the quantized behaviour exactly whether or not the original op declared a fused activation;
- **stride and padding**: from the tensor shapes (explicit PAD operators + VALID convolutions, or SAME).

Upsampling uses the ratio of output to input size, so the float graph accepts any input whose sides are
multiples of the network's total stride, not only the size the file was converted at. The float graph does not
saturate at the top of each quantized range (the int8 file does, e.g. FastDepth's output ends at 18.3 m).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

_QMIN = {np.dtype(np.int8): -128, np.dtype(np.uint8): 0}
_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE"}


@dataclass(frozen=True)
class Step:
    op: str
    inputs: tuple[int, ...]   # tensor indices (activations only)
    output: int
    module: str = ""          # name in TfliteGraph.layers
    activation: str = ""      # "", "relu", "relu6"
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom (F.pad order)
    scale: tuple[float, float] = (1.0, 1.0)        # resize factor (height, width)


class TfliteGraph(nn.Module):
    """Float execution of a TFLite graph: (N, 3, H, W) in the file's input range → its output, NCHW."""

    def __init__(self, steps: list[Step], layers: dict[str, nn.Module], graph_input: int, graph_output: int,
                 input_range: tuple[float, float]) -> None:
        super().__init__()
        self.steps = steps
        self.layers = nn.ModuleDict(layers)
        self.graph_input = graph_input
        self.graph_output = graph_output
        self.input_range = input_range  # real values the file's input quantization covers, e.g. (0, 1)

    def forward(self, x: torch.Tensor, final_activation: bool = True) -> torch.Tensor:
        """The graph's output; without ``final_activation`` the last activation is left out (a caller's own)."""
        values: dict[int, torch.Tensor] = {self.graph_input: x}
        last_activation = max((n for n, s in enumerate(self.steps) if s.activation), default=-1)
        for n, step in enumerate(self.steps):
            a = values[step.inputs[0]]
            if step.op in _PASS_THROUGH:
                y = a
            elif step.op == "PAD":
                y = F.pad(a, step.pad)
            elif step.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                y = self.layers[step.module](F.pad(a, step.pad) if any(step.pad) else a)
            elif step.op == "ADD":
                y = a + values[step.inputs[1]]
            else:  # resize
                mode = "nearest" if step.op == "RESIZE_NEAREST_NEIGHBOR" else "bilinear"
                y = F.interpolate(a, scale_factor=step.scale, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
            if step.activation and (final_activation or n != last_activation):
                y = F.relu6(y) if step.activation == "relu6" else F.relu(y)
            values[step.output] = y
        return values[self.graph_output]

    @property
    def stride(self) -> int:
        """The graph's total downsampling, the product of its convolutions' strides (FastDepth: 32): input sides must
        be multiples of it."""
        total = 1
        for layer in self.layers.values():
            total *= int(layer.stride[0])
        return total


def _activation(detail: dict[str, Any]) -> str:
    q = detail["quantization_parameters"]
    qmin = _QMIN.get(np.dtype(detail["dtype"]))
    if qmin is None or len(q["scales"]) != 1 or int(q["zero_points"][0]) != qmin:
        return ""
    top = float(q["scales"][0]) * 255
    return "relu6" if abs(top - 6.0) < 0.05 else "relu"


def _dequantize(value: np.ndarray, detail: dict[str, Any], axis: int) -> np.ndarray:
    q = detail["quantization_parameters"]
    scales = np.asarray(q["scales"], np.float64)
    zero = np.asarray(q["zero_points"], np.float64)
    if scales.size == 0:
        return value.astype(np.float32)
    shape = [1] * value.ndim
    if scales.size > 1:
        shape[axis] = -1
    return ((value.astype(np.float64) - zero.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def _stride_and_padding(size_in: int, size_out: int, kernel: int) -> tuple[int, tuple[int, int]]:
    """Stride and (before, after) padding of one axis: VALID if the sizes fit it, else TFLite's SAME."""
    for stride in (1, 2, 3, 4):
        if (size_in - kernel) // stride + 1 == size_out and size_in >= kernel:
            return stride, (0, 0)
    for stride in (1, 2, 3, 4):
        if -(-size_in // stride) == size_out:
            total = max((size_out - 1) * stride + kernel - size_in, 0)
            return stride, (total // 2, total - total // 2)  # SAME puts the odd pixel after
    raise ValueError(f"cannot infer a convolution's stride: {size_in} → {size_out} with kernel {kernel}")


def load_tflite_graph(path: str | Path) -> TfliteGraph:
    """Read ``path`` (a quantized or float TFLite file) into a float :class:`TfliteGraph`."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    graph_input = interpreter.get_input_details()[0]
    graph_output = interpreter.get_output_details()[0]
    steps: list[Step] = []
    layers: dict[str, nn.Module] = {}
    for op in interpreter._get_ops_details():  # LiteRT's only way to list operators from Python
        name, inputs, output = op["op_name"], [int(i) for i in op["inputs"] if i >= 0], int(op["outputs"][0])
        out_detail = details[output]
        if name in _PASS_THROUGH:
            steps.append(Step(name, (inputs[0],), output))
        elif name == "PAD":
            pads = interpreter.get_tensor(inputs[1])  # NHWC (before, after) pairs
            if pads[0].any() or pads[3].any():
                raise ValueError(f"{path}: PAD on batch or channel axes is not supported")
            steps.append(Step(name, (inputs[0],), output, pad=(int(pads[2][0]), int(pads[2][1]), int(pads[1][0]), int(pads[1][1]))))
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x_detail, w_detail = details[inputs[0]], details[inputs[1]]
            w = _dequantize(interpreter.get_tensor(inputs[1]), w_detail, w_detail["quantization_parameters"]["quantized_dimension"])
            bias = _dequantize(interpreter.get_tensor(inputs[2]), details[inputs[2]], 0) if len(inputs) > 2 else None
            depthwise = name == "DEPTHWISE_CONV_2D"
            channels_in = int(x_detail["shape"][3])
            if depthwise:
                if w.shape[3] != channels_in:
                    raise ValueError(f"{path}: depthwise convolution with a depth multiplier is not supported")
                weight = w[0].transpose(2, 0, 1)[:, None]        # (1, kh, kw, C) → (C, 1, kh, kw)
            else:
                weight = w.transpose(0, 3, 1, 2)                 # (O, kh, kw, I) → (O, I, kh, kw)
            kh, kw = weight.shape[-2:]
            (h_in, w_in), (h_out, w_out) = x_detail["shape"][1:3], out_detail["shape"][1:3]
            stride_h, pad_h = _stride_and_padding(int(h_in), int(h_out), kh)
            stride_w, pad_w = _stride_and_padding(int(w_in), int(w_out), kw)
            conv = nn.Conv2d(channels_in, weight.shape[0], (kh, kw), (stride_h, stride_w), groups=channels_in if depthwise else 1,
                             bias=bias is not None)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
                if bias is not None:
                    conv.bias.copy_(torch.from_numpy(bias))
            key = f"op{op['index']}"
            layers[key] = conv
            steps.append(Step(name, (inputs[0],), output, module=key, activation=_activation(out_detail),
                              pad=(pad_w[0], pad_w[1], pad_h[0], pad_h[1])))
        elif name == "ADD":
            steps.append(Step(name, (inputs[0], inputs[1]), output, activation=_activation(out_detail)))
        elif name in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
            (h_in, w_in), (h_out, w_out) = details[inputs[0]]["shape"][1:3], out_detail["shape"][1:3]
            steps.append(Step(name, (inputs[0],), output, scale=(h_out / h_in, w_out / w_in)))
        else:
            raise ValueError(f"{path}: TFLite operator {name} is not supported by the float import")
    q = graph_input["quantization_parameters"]
    scale, zero = (float(q["scales"][0]), float(q["zero_points"][0])) if len(q["scales"]) else (1.0, 0.0)
    qmin = _QMIN.get(np.dtype(graph_input["dtype"]), 0)
    low, high = (qmin - zero) * scale, (qmin + 255 - zero) * scale
    graph = TfliteGraph(steps, layers, int(graph_input["index"]), int(graph_output["index"]), (low, high))
    graph.eval()
    return graph

