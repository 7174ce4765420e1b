"""The float import of a quantized TFLite network (``depth-node train --init teacher``), against LiteRT itself."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_node.train.tflite_import import _stride_and_padding

REPO = Path(__file__).resolve().parent.parent
FASTDEPTH = REPO.parent / "shared" / "models" / "fastdepth" / "fast_depth_224.tflite"
UNLABELED = REPO.parent / "shared" / "data" / "train" / "unlabeled"
needs_fastdepth = pytest.mark.skipif(not FASTDEPTH.is_file() or not UNLABELED.is_dir(), reason="../shared FastDepth or train data absent")


def _frames(count: int) -> list[np.ndarray]:
    files = sorted(p for p in UNLABELED.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    picks = [files[i] for i in np.linspace(0, len(files) - 1, count).astype(int)]  # corridors and roads
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in picks]


def test_stride_and_padding_of_valid_and_same_convolutions() -> None:
    assert _stride_and_padding(226, 112, 3) == (2, (0, 0))     # explicit PAD 1 + VALID stride 2
    assert _stride_and_padding(56, 56, 1) == (1, (0, 0))       # pointwise
    assert _stride_and_padding(32, 28, 5) == (1, (0, 0))       # 5×5 after PAD 2
    assert _stride_and_padding(56, 56, 3) == (1, (1, 1))       # SAME, stride 1
    assert _stride_and_padding(57, 29, 3) == (2, (1, 1))       # SAME, stride 2, odd input
    assert _stride_and_padding(56, 28, 3) == (2, (0, 1))       # SAME puts the odd pixel after, as TFLite does
    with pytest.raises(ValueError, match="stride"):
        _stride_and_padding(10, 40, 3)


@needs_fastdepth
def test_float_import_reproduces_the_int8_network() -> None:
    """Same frames through LiteRT (int8) and the float import at the file's 224×224: equal up to quantization noise."""
    from ai_edge_litert.interpreter import Interpreter

    from depth_node.train.tflite_import import load_tflite_graph

    graph = load_tflite_graph(FASTDEPTH)
    assert graph.input_range == pytest.approx((0.0, 1.0))
    assert 1.0e6 < sum(p.numel() for p in graph.parameters()) < 2.5e6     # fits the 10 MB budget as fp32
    interpreter = Interpreter(model_path=str(FASTDEPTH))
    interpreter.allocate_tensors()
    out = interpreter.get_output_details()[0]
    scale = float(out["quantization_parameters"]["scales"][0])
    for rgb in _frames(4):
        small = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], small[None])
        interpreter.invoke()
        reference = interpreter.get_tensor(out["index"])[0, :, :, 0].astype(np.float64) * scale
        with torch.no_grad():
            ours = graph(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255)[0, 0].double().numpy()
        valid = reference > 0.5
        relative = np.abs(ours[valid] - reference[valid]) / reference[valid]
        assert np.median(relative) < 0.06, np.median(relative)
        assert np.corrcoef(ours[valid], reference[valid])[0, 1] > 0.95
        with torch.no_grad():  # an untrained-for size (4:3 at 256×192) runs and stays positive
            wide = graph(torch.from_numpy(cv2.resize(rgb, (256, 192))).permute(2, 0, 1)[None].float() / 255)
        assert wide.shape == (1, 1, 192, 256) and bool((wide >= 0).all())


@needs_fastdepth
def test_imported_net_maps_normalized_input_back_to_the_graphs_range() -> None:
    """ImportedNet feeds the graph its own input range from ImageNet-normalized RGB, and its smooth last activation
    equals the graph's ReLU where depth is more than a metre; the graph's stride is FastDepth's 32."""
    from depth_node.train.network import ImportedNet
    from depth_node.train.tflite_import import load_tflite_graph
    from depth_node.train.trainer import to_tensor

    graph = load_tflite_graph(FASTDEPTH)
    network = ImportedNet(graph).eval()
    assert graph.stride == 32
    rgb = cv2.resize(_frames(1)[0], (224, 224), interpolation=cv2.INTER_AREA)
    with torch.no_grad():
        raw = graph(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
        depth = network(to_tensor(rgb[None]))
    far = raw > 1.0  # softplus(β=10) + 1 mm equals ReLU there to well under a millimetre
    assert far.float().mean() > 0.5
    np.testing.assert_allclose(depth[far].numpy(), raw[far].numpy(), atol=2e-3)
    assert bool((depth > 0).all())


@needs_fastdepth
def test_export_of_the_tflite_card_is_the_float_network_at_its_own_geometry(tmp_path: Path) -> None:
    """`depth-node export fastdepth`: an ONNX file taking any batch and size, equal to the float import; its card keeps
    FastDepth's square 224 input as a stretched long side (test-time scales can change it) and names its TFLite card;
    through the pipeline it predicts what LiteRT's int8 file does, to quantization noise."""
    import subprocess
    import sys

    import onnxruntime
    import yaml

    from depth_node.estimators import load_estimator

    run = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "export", "fastdepth", "-o", str(tmp_path / "fd.onnx"),
                          "--name", "fd_float"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    card = yaml.safe_load((tmp_path / "fd.yaml").read_text())
    assert card["name"] == "fd_float" and card["weights"] == "fd.onnx" and card["network"] == {"tflite": "fastdepth"}
    assert {k: card["input"][k] for k in ("long_side", "multiple_of", "keep_aspect")} == {"long_side": 224, "multiple_of": 32, "keep_aspect": False}
    session = onnxruntime.InferenceSession(str(tmp_path / "fd.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": np.zeros((3, 3, 160, 192), np.float32)})[0].shape == (3, 1, 160, 192)
    ours, released = load_estimator(tmp_path / "fd.yaml"), load_estimator(REPO / "models" / "fastdepth.yaml")
    assert ours.flexible_input and ours.preprocess(_frames(1)[0]).shape == (1, 3, 224, 224)
    for rgb in _frames(3):
        a, b = ours.predict(rgb).values, released.predict(rgb).values
        assert a.shape == b.shape == (224, 224)
        assert np.median(np.abs(a - b) / b) < 0.03, np.median(np.abs(a - b) / b)   # the int8 file's 7 cm steps, mostly
