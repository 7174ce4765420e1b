"""Model families on their runtimes: Depth Anything V2 (torch and ONNX), FastDepth (TFLite, real weights),
the shipped cards, `depth-node models` and `depth-node export`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from _models import fastdepth_reference, tiny_depth_anything
from depth_node.core.camera import PinholeCamera
from depth_node.core.pipeline import DepthPipeline, PipelineConfig
from depth_node.core.spaces import OutputSpace
from depth_node.errors import ModelLoadError
from depth_node.estimators import FAMILIES, load_card, load_estimator
from depth_node.paths import models_dir

REPO = Path(__file__).resolve().parent.parent
RGB = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
CAM = PinholeCamera.from_hfov(128, 96, 60.0)


@pytest.fixture(scope="module")
def da_cards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("depth_anything")
    return {kind: tiny_depth_anything(folder, kind) for kind in ("relative", "metric")}


def reference_da(folder: Path, rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Independent forward pass: transformers model + hand-written preprocessing (bicubic resize, ImageNet norm)."""
    from transformers import DepthAnythingForDepthEstimation

    model = DepthAnythingForDepthEstimation.from_pretrained(str(folder), local_files_only=True).eval()
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True) / 255.0
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(pixel_values=x).predicted_depth[0].numpy()


@pytest.mark.parametrize("kind", ["relative", "metric"])
def test_depth_anything_torch_matches_reference(da_cards: dict[str, Path], kind: str) -> None:
    estimator = load_estimator(da_cards[kind])
    assert estimator.backend == "torch"
    prediction = estimator.predict(RGB)
    assert prediction.values.shape == (70, 98)  # long side 98, aspect kept, multiples of 14
    expected_space = OutputSpace.DISPARITY if kind == "relative" else OutputSpace.DEPTH
    assert prediction.spec.space is expected_space
    reference = reference_da(da_cards[kind].parent / f"da_{kind}", RGB, (70, 98))
    np.testing.assert_allclose(prediction.values, reference, rtol=1e-5, atol=1e-6)


def test_depth_anything_through_the_pipeline(da_cards: dict[str, Path]) -> None:
    metric = DepthPipeline(load_estimator(da_cards["metric"]))
    result = metric.process(RGB, CAM)
    assert result.depth_m.shape == (96, 128) and np.isfinite(result.depth_m).all()
    assert (result.depth_m > 0).all() and (result.depth_m <= 20.0 + 1e-4).all()  # metric head: sigmoid × max_depth
    relative = load_estimator(da_cards["relative"])
    pipeline = DepthPipeline(relative, PipelineConfig(scale_mode="fixed", scale_fixed_scale=3.0, scale_fixed_shift=0.5, sky_disparity_fraction=0.0))
    result = pipeline.process(RGB, CAM, points=False)
    disparity = cv2.resize(result.prediction.values, (128, 96), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(result.depth_m, 1.0 / (3.0 * disparity + 0.5), rtol=1e-5)  # the depth it encodes


def test_card_must_match_the_checkpoint(da_cards: dict[str, Path], tmp_path: Path) -> None:
    text = da_cards["relative"].read_text().replace("space: disparity", "space: depth").replace("invariance: affine", "invariance: metric")
    text = text.replace("weights: da_relative", f"weights: {da_cards['relative'].parent / 'da_relative'}")
    (tmp_path / "wrong.yaml").write_text(text)
    with pytest.raises(ModelLoadError, match="relative Depth Anything model, which outputs affine disparity"):
        load_estimator(tmp_path / "wrong.yaml")
    text = text.replace(str(da_cards["relative"].parent / "da_relative"), str(tmp_path / "nowhere"))
    (tmp_path / "missing.yaml").write_text(text)
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_estimator(tmp_path / "missing.yaml")


def test_reduced_precision_keeps_norms_in_fp32(da_cards: dict[str, Path]) -> None:
    full = load_estimator(da_cards["metric"]).predict(RGB).values
    bf16 = load_estimator(da_cards["metric"], precision="bf16")
    norms = [m for m in bf16.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    assert next(bf16.model.parameters()).dtype in (torch.bfloat16, torch.float32)
    values = bf16.predict(RGB).values
    assert np.isfinite(values).all() and np.abs(values - full).max() < 0.05 * np.abs(full).max()
    with pytest.raises(ModelLoadError, match="fp16 on the CPU"):
        load_estimator(da_cards["metric"], precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA GPU"):
            load_estimator(da_cards["metric"], device="cuda")


def test_export_to_onnx_agrees_with_torch(da_cards: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "da.onnx"
    result = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "export", str(da_cards["metric"]), "-o", str(out),
                             "--size", "96x128"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "max |onnx - torch|" in result.stdout and out.is_file() and out.with_suffix(".yaml").is_file()
    onnx_estimator = load_estimator(out.with_suffix(".yaml"))
    torch_estimator = load_estimator(da_cards["metric"])
    assert onnx_estimator.backend == "onnxruntime" and load_card(out.with_suffix(".yaml")).family == "depth_anything_v2"
    assert load_card(out.with_suffix(".yaml")).input.size == (70, 98)  # fixed: the traced input for 96x128
    # Same input tensor: ONNX Runtime vs torch within 1e-4 of the output range (stated tolerance).
    other = np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    x = torch_estimator.preprocess(other)
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    reference = torch_estimator.infer(x).values
    same_input = session.run(None, {"image": x.numpy()})[0][0]
    assert np.abs(same_input - reference).max() <= 1e-4 * np.abs(reference).max()
    # Through the ONNX card (cv2 resize instead of torch's): the same prediction within 2 % of the range.
    via_card = onnx_estimator.predict(other).values
    assert via_card.shape == reference.shape and np.abs(via_card - reference).max() <= 0.02 * np.abs(reference).max()


def test_every_shipped_card_is_valid_and_its_family_registered() -> None:
    cards = sorted(models_dir().glob("*.yaml"))
    assert len(cards) >= 6
    for path in cards:
        card = load_card(path)
        assert card.family in FAMILIES, path
        assert card.license, path
        if card.family == "diffusion":
            from depth_node.estimators.diffusion import DiffusionSettings

            DiffusionSettings.from_card(card)  # the diffusion block is valid too


def test_models_cli_lists_and_download_fails_clearly_offline() -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "depth_node.tools.cli", "models"]
    listing = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert listing.returncode == 0 and "depth_anything_v2_small" in listing.stdout and "affine disparity" in listing.stdout
    assert "INVALID" not in listing.stdout
    failed = subprocess.run([*cmd, "download", "depth_anything_v2_small"], capture_output=True, text=True, env=env, timeout=60)
    if "already at" not in failed.stdout:
        assert failed.returncode == 2 and "could not download depth-anything/Depth-Anything-V2-Small-hf" in failed.stderr
        assert "copy DIR to" in failed.stderr
    unknown = subprocess.run([*cmd, "download", "nope"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and "no model card named 'nope'" in unknown.stderr


def test_what_models_lists_is_what_model_card_takes_with_full_licences_and_did_you_mean() -> None:
    """Every name in the listing's first column loads through the node's resolution (the default's card calls itself
    fastdepth_float and was listed so, though only `default` is accepted); licences are whole; a misspelt name gets
    the close match and the list; a value with a folder in it is a path only, never models/<value>."""
    from depth_node.paths import resolve_card

    listing = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "models"], capture_output=True, text=True)
    rows = [line.split()[0] for line in listing.stdout.splitlines()[1:] if line and not line.startswith(" ")]
    assert "default" in rows and "fastdepth_float" not in rows, listing.stdout
    for name in rows:
        assert load_card(resolve_card(name)).path == (REPO / "models" / f"{name}.yaml").resolve()
    for path in (REPO / "models").glob("*.yaml"):
        assert f"licence: {load_card(path).license}" in listing.stdout  # not cut mid-word
    with pytest.raises(ModelLoadError, match=r"no model card named 'fastdept' .* did you mean 'fastdepth'\? model_card takes one "
                                             r"of default, depth_anything_v2_base, .*or a path to a card YAML file"):
        load_card(resolve_card("fastdept"))
    outside = "../models/fastdepth"  # models/../models/fastdepth.yaml exists, but a value with a folder is a path
    assert resolve_card(outside) == Path(outside)
    with pytest.raises(ModelLoadError, match="model card not found: ../models/fastdepth"):
        load_card(resolve_card(outside))


# ---------------------------------------------------------------- FastDepth: the real pretrained model
FASTDEPTH = REPO.parent / "shared" / "models" / "fastdepth" / "fast_depth_224.tflite"
RGBD_DEV = REPO.parent / "shared" / "data" / "rgbd_dev"
needs_fastdepth = pytest.mark.skipif(not FASTDEPTH.is_file(), reason=f"{FASTDEPTH} is not present (../shared)")


@needs_fastdepth
def test_fastdepth_pipeline_equals_the_runtime_on_rgbd_dev() -> None:
    records = [r for r in json.loads((RGBD_DEV / "index.json").read_text()) if not r.get("synthetic")]
    assert len(records) >= 10
    pipeline = DepthPipeline(load_estimator(models_dir() / "fastdepth.yaml"), PipelineConfig(output_resolution="model"))
    for record in records:
        rgb = cv2.imread(str(RGBD_DEV / record["rgb"]), cv2.IMREAD_COLOR)[..., ::-1].copy()
        camera = PinholeCamera(record["width"], record["height"], record["fx"], record["fy"], record["cx"], record["cy"])
        result = pipeline.process(rgb, camera, points=False, confidence=False)
        expected = fastdepth_reference(FASTDEPTH, rgb)
        expected[expected <= 0] = np.nan  # 0 m is invalid
        np.testing.assert_array_equal(result.depth_m, expected, err_msg=record["id"])
        assert result.camera == camera.resized(224, 224)


@needs_fastdepth
def test_fastdepth_members_in_one_invocation_equal_single_passes() -> None:
    """LiteRT batching (infer_many resizes the batch axis): int8 outputs identical to one pass each, and single
    frames afterwards still run at batch 1."""
    estimator = load_estimator(models_dir() / "fastdepth.yaml")
    records = [r for r in json.loads((RGBD_DEV / "index.json").read_text()) if not r.get("synthetic")][:3]
    images = [cv2.imread(str(RGBD_DEV / r["rgb"]), cv2.IMREAD_COLOR)[..., ::-1].copy() for r in records]
    inputs = [estimator.preprocess(image) for image in images] + [estimator.preprocess(np.ascontiguousarray(images[0][:, ::-1]))]
    singles = [estimator.infer(x).values for x in inputs]
    together = estimator.infer_many(inputs)
    assert len(together) == 4
    for single, member in zip(singles, together):
        np.testing.assert_array_equal(member.values, single)
    assert not np.array_equal(together[0].values, together[3].values)  # the flipped member is its own prediction
    np.testing.assert_array_equal(estimator.infer(inputs[1]).values, singles[1])


@needs_fastdepth
def test_fastdepth_through_the_node_equals_the_runtime() -> None:
    from _ros import Harness, camera_info, header
    from depth_node.ros.convert import array_to_image, image_to_array

    record = next(r for r in json.loads((RGBD_DEV / "index.json").read_text()) if r["id"].startswith("slambook"))
    rgb = cv2.imread(str(RGBD_DEV / record["rgb"]), cv2.IMREAD_COLOR)[..., ::-1].copy()
    k = [record["fx"], 0.0, record["cx"], 0.0, record["fy"], record["cy"], 0.0, 0.0, 1.0]
    with Harness({"model_card": "fastdepth", "output_resolution": "model"}, outputs=("depth/image",)) as h:
        h.send(array_to_image(rgb, "rgb8", header(0)), camera_info(0, record["width"], record["height"], k))
        assert h.wait_for(lambda: h.count("depth/image") == 1)
        depth = image_to_array(h.last("depth/image"))
    expected = fastdepth_reference(FASTDEPTH, rgb)
    expected[expected <= 0] = np.nan
    np.testing.assert_array_equal(depth, expected)


def test_channels_last_gives_the_same_result(da_cards: dict[str, Path]) -> None:
    eager = load_estimator(da_cards["metric"]).predict(RGB).values
    np.testing.assert_allclose(load_estimator(da_cards["metric"], channels_last=True).predict(RGB).values, eager, rtol=1e-4, atol=1e-5)


def test_torch_compile_gives_the_eager_result(da_cards: dict[str, Path]) -> None:
    eager = load_estimator(da_cards["metric"]).predict(RGB).values
    compiled = load_estimator(da_cards["metric"], compile_mode="default")
    assert type(compiled.model).__name__ == "OptimizedModule"
    np.testing.assert_allclose(compiled.predict(RGB).values, eager, rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelLoadError, match="torch_compile must be"):
        load_estimator(da_cards["metric"], compile_mode="fastest")


def test_auto_backend_takes_tensorrt_only_when_it_can_run(tmp_path: Path) -> None:
    from _models import conv_model
    from depth_node.estimators.registry import tensorrt_ready

    card = load_card(conv_model(tmp_path))
    assert not tensorrt_ready(card)  # no fixed input size: an engine could not be built
    import dataclasses

    sized = dataclasses.replace(card, input=dataclasses.replace(card.input, size=(72, 96), long_side=None))
    expected = __import__("importlib").util.find_spec("tensorrt") is not None and torch.cuda.is_available()
    assert tensorrt_ready(sized) == expected
    assert load_estimator(conv_model(tmp_path), backend="auto", device="cpu").backend == "onnxruntime"  # CPU: never TensorRT


@pytest.mark.parametrize("damage", ["random", "truncated", "pickle"])
def test_damaged_torch_weights_are_a_load_error_and_the_fallback_is_tried(tmp_path: Path, damage: str) -> None:
    """Random or truncated safetensors, or a pickle in their place: one ModelLoadError naming the folder (no
    SafetensorError / UnpicklingError traceback), so the node goes on to its backend_fallback entries."""
    from depth_node.estimators.registry import load_model

    card = tiny_depth_anything(tmp_path, "metric")
    weights = tmp_path / "da_metric" / "model.safetensors"
    data = weights.read_bytes()
    if damage == "random":
        weights.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.unlink()
        (tmp_path / "da_metric" / "pytorch_model.bin").write_bytes(b"\x80\x04\x95garbage, not a pickle")
    with pytest.raises(ModelLoadError, match="could not load .*da_metric.*download them again"):
        load_estimator(card)
    with pytest.raises(ModelLoadError, match="every backend failed — torch:cpu: .* \\| onnxruntime:cpu: "):
        load_model(PipelineConfig(model_card=str(card), backend="torch", backend_fallback="onnxruntime:cpu"))


def test_a_scheduler_config_cannot_name_any_class(tmp_path: Path) -> None:
    from _models import tiny_diffusion

    card = tiny_diffusion(tmp_path / "sched", "e2e_ft")
    config = next((tmp_path / "sched").rglob("scheduler_config.json"))
    data = json.loads(config.read_text())
    data["_class_name"] = "DiffusionPipeline"                       # a real diffusers class, but not a scheduler
    config.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="names class 'DiffusionPipeline'; depth_node loads only DDIMScheduler"):
        load_estimator(card)
