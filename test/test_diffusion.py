"""Latent-diffusion families on tiny diffusers models built from configs: each variant against an independent
reference computation, Marigold's seeded DDIM steps, the tiny decoder, CIDE conditioning, ONNX export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from _models import tiny_diffusion
from depth_node.core.camera import PinholeCamera
from depth_node.core.pipeline import DepthPipeline, PipelineConfig
from depth_node.errors import ModelLoadError
from depth_node.estimators import load_estimator

RGB = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("diffusion")


def reference(root: Path, rgb: np.ndarray, noise_latent: bool, timestep: int, prediction: str, class_labels=None) -> np.ndarray:  # noqa: ANN001
    """Written out from the papers' description, loading the components directly from disk."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel.from_pretrained(str(root / "unet")).eval()
    vae = AutoencoderKL.from_pretrained(str(root / "vae")).eval()
    alpha_bar = DDIMScheduler.from_pretrained(str(root / "scheduler")).alphas_cumprod[timestep]
    tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"))
    ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        context = CLIPTextModel.from_pretrained(str(root / "text_encoder"))(ids)[0]
        x = torch.nn.functional.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), size=(32, 48), mode="bilinear",
                                            align_corners=False, antialias=True) / 127.5 - 1.0
        z = vae.encode(x).latent_dist.mode() * 0.18215
        noisy = torch.zeros_like(z)
        out = unet(torch.cat([z, noisy], 1) if noise_latent else z, timestep, encoder_hidden_states=context, class_labels=class_labels).sample
        x0 = {"sample": out, "epsilon": (noisy - (1 - alpha_bar).sqrt() * out) / alpha_bar.sqrt(),
              "v_prediction": alpha_bar.sqrt() * noisy - (1 - alpha_bar).sqrt() * out}[prediction]
        image = vae.decode(x0 / 0.18215).sample
    return ((image.mean(1).clamp(-1, 1) + 1) / 2)[0].numpy()


@pytest.mark.parametrize("variant, prediction", [("e2e_ft", "v_prediction"), ("lotus_d", "sample"), ("depthmaster", "epsilon")])
def test_single_step_variants_match_the_reference(folder: Path, variant: str, prediction: str) -> None:
    card = tiny_diffusion(folder / prediction, variant, prediction=prediction)
    estimator = load_estimator(card)
    values = estimator.predict(RGB).values
    assert values.shape == (32, 48) and values.min() >= 0 and values.max() <= 1
    labels = None
    if variant == "lotus_d":
        e = torch.tensor([[1.0, 0.0]])
        labels = torch.cat([torch.sin(e), torch.cos(e)], -1)
    expected = reference(card.parent / card.stem, RGB, variant == "e2e_ft", 999, prediction, labels)
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(values, estimator.predict(RGB).values)  # deterministic


def test_output_spaces_become_the_depth_they_encode(folder: Path) -> None:
    card = tiny_diffusion(folder / "spaces", "depthmaster", prediction="epsilon")
    pipeline = DepthPipeline(load_estimator(card), PipelineConfig(scale_mode="fixed", scale_fixed_scale=2.0, scale_fixed_shift=0.1, output_resolution="model",
                                                              sky_disparity_fraction=0.0))  # the conversion alone
    result = pipeline.process(RGB, PinholeCamera.from_hfov(64, 48, 60), points=False)
    np.testing.assert_allclose(result.depth_m, 1.0 / (2.0 * result.prediction.values + 0.1) ** 2, rtol=1e-5)  # sqrt-disparity


def test_marigold_is_seeded_and_takes_its_steps(folder: Path) -> None:
    card = tiny_diffusion(folder / "marigold", "marigold", steps=2, seed=7)
    a, b = load_estimator(card), load_estimator(card)
    first = a.predict(RGB).values
    np.testing.assert_array_equal(first, b.predict(RGB).values)  # same seed, same members
    assert not np.array_equal(first, a.predict(RGB).values)  # the next pass draws new noise
    assert list(a.scheduler.timesteps.tolist()) == [999, 499]  # DDIM trailing, 2 steps
    calls = []
    hook = a.unet.register_forward_hook(lambda *args: calls.append(1))
    a.predict(RGB)
    hook.remove()
    assert len(calls) == 2


def test_members_go_through_one_batched_pass_and_equal_single_passes(folder: Path) -> None:
    """Ensemble members batch through VAE, UNet steps and decoder: one UNet call per step for all of them, and each
    member equals its own single pass (deterministic variant; Marigold with the same seeded noise stream)."""
    flips = [RGB, np.ascontiguousarray(RGB[:, ::-1]), 255 - RGB]
    for card, steps in ((tiny_diffusion(folder / "batch", "e2e_ft"), 1), (tiny_diffusion(folder / "batch", "marigold", steps=2, seed=3), 2)):
        batched, single = load_estimator(card), load_estimator(card)
        inputs = [batched.preprocess(rgb) for rgb in flips]
        calls = []
        hook = batched.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
        together = batched.infer_many(inputs)
        hook.remove()
        assert calls == [len(flips)] * steps                                            # one call per step, all members
        alone = [single.infer(x) for x in inputs]
        for a, b in zip(together, alone):
            np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-5)
        if steps > 1:
            same_image = batched.infer_many([inputs[0], inputs[0]])
            assert not np.allclose(same_image[0].values, same_image[1].values)         # members draw their own noise


def test_tiny_decoder_and_cide_conditioner(folder: Path) -> None:
    full = load_estimator(tiny_diffusion(folder / "dec", "e2e_ft"))
    tiny = load_estimator(tiny_diffusion(folder / "dec", "e2e_ft", tiny_decoder=True))
    assert type(tiny.decoder).__name__ == "AutoencoderTiny" and tiny.decoder is not tiny.vae
    assert tiny.predict(RGB).values.shape == full.predict(RGB).values.shape
    cide = load_estimator(tiny_diffusion(folder / "cide", "depthmaster", conditioner="cide"))
    context_a = cide.cide(RGB)
    context_b = cide.cide(255 - RGB)
    assert context_a.shape == (1, 1, 16) and not torch.allclose(context_a, context_b)  # conditioned on the image


def test_diffusion_card_errors(folder: Path, tmp_path: Path) -> None:
    card = tiny_diffusion(folder / "errors", "e2e_ft")
    data = yaml.safe_load(card.read_text())
    data["weights"] = str(card.parent / data["weights"])

    def load(change: dict) -> None:
        path = tmp_path / "card.yaml"
        path.write_text(yaml.safe_dump({**data, "diffusion": {**data["diffusion"], **change}}))
        load_estimator(path)

    with pytest.raises(ModelLoadError, match="variant' must be one of"):
        load({"variant": "stable_zero"})
    with pytest.raises(ModelLoadError, match="needs variant marigold"):
        load({"steps": 4})
    with pytest.raises(ModelLoadError, match="feeds the UNet 4 latent channels"):
        load({"variant": "lotus_d"})
    data["weights"] = str(tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="weights folder .* not found"):
        load({})


def test_single_step_exports_to_onnx_and_agrees(folder: Path, tmp_path: Path) -> None:
    card = tiny_diffusion(folder / "export", "e2e_ft")
    out = tmp_path / "e2e.onnx"
    result = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "export", str(card), "-o", str(out), "--size", "48x64"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    estimator = load_estimator(card)
    x = estimator.preprocess(RGB)
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_values = session.run(None, {"image": x.numpy()})[0][0]
    np.testing.assert_allclose(onnx_values, estimator.infer(x).values, atol=1e-4)  # same input: values in [0, 1]
    onnx_estimator = load_estimator(out.with_suffix(".yaml"))  # the written card runs it through the node's path
    assert onnx_estimator.backend == "onnxruntime" and onnx_estimator.predict(RGB).values.shape == (32, 48)
    marigold = tiny_diffusion(folder / "export", "marigold")
    refused = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "export", str(marigold), "-o", str(tmp_path / "m.onnx")],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "only deterministic single-step" in refused.stderr
