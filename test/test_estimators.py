"""Model cards, the ONNX Runtime estimator and the pipeline, on small real ONNX models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from _models import plane_disparity, plane_model, write_card
from depth_node.core.camera import PinholeCamera
from depth_node.core.pipeline import DepthPipeline, PipelineConfig
from depth_node.core.spaces import Invariance, OutputSpace
from depth_node.errors import ConfigError, InputError, ModelLoadError
from depth_node.estimators import load_card, load_estimator
from depth_node.estimators.card import parse_card

CAM = PinholeCamera(640, 480, 500.0, 500.0, 319.5, 239.5)
NORMAL = np.array([0.0, -0.3, 1.0]) / np.linalg.norm([0.0, -0.3, 1.0])


@pytest.fixture(scope="module")
def plane_card(model_dir: Path) -> Path:
    return plane_model(model_dir, CAM.resized(320, 240), NORMAL, 2.0)


GOOD = {"name": "m", "family": "onnx", "license": "MIT", "weights": "m.onnx", "output": {"space": "depth", "invariance": "metric"}}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": ""}, "'name' is required"),
        ({"weights": None}, "'weights' is required"),
        ({"output": None}, "'output' is required"),
        ({"output": {"space": "height", "invariance": "metric"}}, "'output.space' must be one of"),
        ({"output": {"space": "depth", "invariance": "relative"}}, "'output.invariance' must be one of"),
        ({"output": {"space": "depth", "invariance": "metric", "unit_scale": -1}}, "'output.unit_scale'"),
        ({"input": {"size": [240]}}, "'input.size' must be [height, width]"),
        ({"input": {"size": [240, 320], "long_side": 518}}, "both 'size' and 'long_side'"),
        ({"input": {"std": [1, 0, 1]}}, "'input.std' must not contain 0"),
        ({"input": {"layout": "chw"}}, "'input.layout' must be one of"),
        ({"input": {"mean": [0.5]}}, "'input.mean' must be a list of 3"),
        ({"input": {"long_side": 224, "keep_aspect": "no"}}, "'input.keep_aspect' must be true or false"),
        ({"input": {"size": [224, 224], "keep_aspect": False}}, "'input.keep_aspect' false stretches"),
    ],
)
def test_card_validation_names_the_key(change: dict, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_card(GOOD | change, Path("/cards/m.yaml"))


def test_card_defaults_and_relative_weights(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    card = load_card(path)
    assert card.weights == tmp_path / "m.onnx"
    assert card.output.space is OutputSpace.DEPTH and card.output.invariance is Invariance.METRIC
    assert card.input.target_size(480, 640) == (480, 640)
    rules = parse_card(GOOD | {"input": {"long_side": 518, "multiple_of": 14}}).input
    assert rules.target_size(480, 640) == (392, 518)
    square = parse_card(GOOD | {"input": {"long_side": 224, "multiple_of": 32, "keep_aspect": False}}).input
    assert square.target_size(480, 640) == square.target_size(720, 1280) == (224, 224)  # stretched, whatever the camera


@pytest.mark.parametrize("content, message", [(None, "model card not found"), ("name: [unclosed", "not valid YAML"), ("- a list", "must be a YAML mapping")])
def test_bad_card_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "card.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        load_card(path)


def test_missing_corrupt_and_unknown_models(tmp_path: Path) -> None:
    card = write_card(tmp_path / "a.yaml", "missing.onnx", {"space": "depth", "invariance": "metric"})
    with pytest.raises(ModelLoadError, match="weights file not found: .*missing.onnx"):
        load_estimator(card)
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x01garbage that is not a protobuf" * 10)
    card = write_card(tmp_path / "b.yaml", "broken.onnx", {"space": "depth", "invariance": "metric"})
    with pytest.raises(ModelLoadError, match="could not load .*broken.onnx.*export it again"):
        load_estimator(card)
    card_path = tmp_path / "c.yaml"
    card_path.write_text(yaml.safe_dump(GOOD | {"family": "nerf"}))
    with pytest.raises(ModelLoadError, match="unknown family 'nerf'"):
        load_estimator(card_path)


@pytest.mark.parametrize("source, target", [((480, 640), (72, 96)), ((480, 640), (224, 224)), ((720, 1280), (224, 224)),
                                            ((720, 1280), (518, 518)), ((376, 672), (192, 256)), ((481, 641), (72, 96))])
def test_area_resize_in_bands_is_the_whole_resize_bit_for_bit(source: tuple[int, int], target: tuple[int, int]) -> None:
    """The model input resized in row bands on the cores equals OpenCV's one pass exactly (the model sees the same
    input), wherever the bands are cut; 481 rows have no whole-numbered cut: one pass."""
    import cv2

    from depth_node.core.parallel import THREADS
    from depth_node.estimators.preprocess import area_bands, resize_image

    (rows, cols), (height, width) = source, target
    edges = area_bands(rows, height, cols, width)
    assert edges[0] == 0 and edges[-1] == height and list(edges) == sorted(set(edges))
    assert (len(edges) > 2) == (THREADS > 1 and rows != 481)
    for seed in range(3):
        image = np.random.default_rng(seed).integers(0, 256, (rows, cols, 3), dtype=np.uint8)
        np.testing.assert_array_equal(resize_image(image, height, width, "area"),
                                      cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    assert area_bands(480, 240, 640, 320) == (0, 240)  # whole factors: OpenCV's fast path, one pass


def test_area_weights_are_opencvs() -> None:
    """The weight table area_bands compares is OpenCV's: the exact weighted mean by it is OpenCV's output before
    rounding (within its float32 accumulation), for a shrink by a non-integer factor both ways."""
    import cv2

    from depth_node.estimators.preprocess import _area_table

    image = np.random.default_rng(5).integers(0, 256, (120, 161), dtype=np.uint8)
    (rows, cols), (height, width) = image.shape, (37, 53)
    weights = []
    for source, target in ((rows, height), (cols, width)):
        matrix = np.zeros((target, source))
        for d, s, alpha in _area_table(source, target, 1.0 / (target / source)):
            matrix[d, s] += alpha
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)  # each output cell is a mean
        weights.append(matrix)
    exact = weights[0] @ image.astype(np.float64) @ weights[1].T
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64)
    assert np.abs(resized - exact).max() <= 0.5 + 1e-3


def test_conv_model_runs_at_the_cards_resolution(conv_card: Path) -> None:
    estimator = load_estimator(conv_card)
    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    prediction = estimator.predict(rgb)
    assert prediction.values.shape == (72, 96) and prediction.values.dtype == np.float32
    assert (prediction.values > 0.5).all()
    # same input, same output (deterministic runtime on CPU)
    np.testing.assert_array_equal(prediction.values, estimator.predict(rgb).values)


def test_onnx_output_matches_torch_reference(conv_card: Path) -> None:
    import torch

    from _models import conv_net

    estimator = load_estimator(conv_card)
    rgb = np.random.default_rng(1).integers(0, 255, (72, 96, 3), dtype=np.uint8)
    # independent preprocessing: (x/255 - mean) / std, NCHW
    x = (rgb / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
    with torch.no_grad():
        reference = conv_net(0)(torch.from_numpy(x)).numpy()[0, 0]
    np.testing.assert_allclose(estimator.predict(rgb).values, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("resolution", ["input", "model"])
def test_pipeline_plane_geometry_within_1mm(plane_card: Path, resolution: str) -> None:
    pipeline = DepthPipeline(load_estimator(plane_card), PipelineConfig(output_resolution=resolution, max_range=100.0))
    result = pipeline.process(np.zeros((480, 640, 3), np.uint8), CAM, colorized=True)
    grid = (480, 640) if resolution == "input" else (240, 320)
    assert result.depth_m.shape == grid and result.camera.size == grid[::-1]
    assert result.points.shape == grid + (4,) and result.colorized.shape == grid + (3,)
    np.testing.assert_allclose(1.0 / result.depth_m[2:-2, 2:-2], plane_disparity(result.camera, NORMAL, 2.0)[2:-2, 2:-2], rtol=1e-5)
    distance = result.points[..., :3].reshape(-1, 3) @ NORMAL - 2.0
    assert np.nanmax(np.abs(distance)) < 1e-3
    # the three stages that only read the depth ran at once: one wall time under their joined names
    assert set(result.timings_ms) == {"preprocess", "infer", "scale", "metric", "cloud+confidence+colorize"}
    masking = DepthPipeline(pipeline.estimator, replace(pipeline.config, confidence_threshold=0.1))
    assert set(masking.process(np.zeros((480, 640, 3), np.uint8), CAM).timings_ms) == {  # it masks the depth: first
        "preprocess", "infer", "scale", "metric", "confidence", "cloud"}


def test_pipeline_scale_modes_and_threshold(conv_card: Path, model_dir: Path) -> None:
    from _models import conv_model

    relative_dir = model_dir / "relative"
    relative_dir.mkdir(exist_ok=True)
    relative = load_estimator(conv_model(relative_dir, invariance="affine"))
    with pytest.raises(ConfigError, match="not metres: set scale.mode to ground_plane"):
        DepthPipeline(relative, PipelineConfig())
    rgb = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    cam = PinholeCamera.from_hfov(160, 120, 60)
    fixed = DepthPipeline(relative, PipelineConfig(scale_mode="fixed", scale_fixed_scale=2.0, scale_fixed_shift=0.5))
    result = fixed.process(rgb, cam, points=False)
    expected = 2.0 * np.asarray(__import__("cv2").resize(result.prediction.values, (160, 120))) + 0.5
    np.testing.assert_allclose(result.depth_m, expected, rtol=1e-5)
    strict = DepthPipeline(load_estimator(conv_card), PipelineConfig(confidence_threshold=0.9))
    result = strict.process(rgb, cam)
    assert np.isnan(result.depth_m[result.confidence < 0.9]).all()
    assert np.isnan(result.points[..., 2][result.confidence < 0.9]).all()
    with pytest.raises(InputError, match="camera_info is 320x240"):
        strict.process(rgb, PinholeCamera.from_hfov(320, 240, 60))
    with pytest.raises(ConfigError, match="min_range < max_range"):
        strict.config = PipelineConfig(min_range=5.0, max_range=1.0)
