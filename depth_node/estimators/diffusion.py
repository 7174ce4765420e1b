"""Latent-diffusion depth estimators (Stable Diffusion 2 VAE + UNet), from a diffusers-layout folder, on torch.

One mechanism, four published families (the card's ``diffusion`` block says which; defaults per variant):

============  =====================  =========  ============  ==========================================
variant       UNet input             timestep   steps         output space (state it in the card)
============  =====================  =========  ============  ==========================================
e2e_ft        [image, zero] latents  999        1 (no noise)  affine-invariant depth
lotus_d       image latent (+ task)  999        1             affine-invariant disparity
depthmaster   image latent           card       1             affine-invariant sqrt-disparity
marigold      [image, noise]         trailing   1–4 (DDIM)    affine-invariant depth, seeded noise
============  =====================  =========  ============  ==========================================

Per pass: RGB → [-1, 1] → VAE encode (latent mode × scaling factor) → UNet → the clean latent x₀ (from the UNet's
``sample`` / ``epsilon`` / ``v_prediction`` output and the scheduler's ᾱ_t) → VAE decode (or the tiny decoder)
→ channel mean → values in [0, 1] (0 = the near end of the model's own space).
Conditioning: ``empty_prompt`` (the text encoder's embedding of "", computed once at load) or ``cide``
(ECoDepth: a frozen image classifier's logits → MLP → softmax weights over learnable embeddings → context).

Folder layout (diffusers): ``unet/``, ``vae/``, ``scheduler/``, ``text_encoder/`` + ``tokenizer/`` (empty_prompt),
``cide/`` (cide: ``classifier/`` + ``cide.safetensors`` + ``config.json``), optional ``vae_tiny/`` (AutoencoderTiny).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depth_node.backends.torch_backend import (
    image_to_tensor,
    prepare_module,
    rules_to_tensor,
)
from depth_node.core.estimator import DepthEstimator, Prediction
from depth_node.estimators.runtime import RuntimeOptions
from depth_node.errors import ModelLoadError
from depth_node.estimators.card import ModelCard

VARIANTS = {
    # variant: (noise_latent, timestep, steps, stochastic)
    "e2e_ft": (True, 999, 1, False),
    "lotus_d": (False, 999, 1, False),
    "depthmaster": (False, 999, 1, False),
    "marigold": (True, None, 1, True),
}
PREDICTIONS = ("sample", "epsilon", "v_prediction")


@dataclass(frozen=True)
class DiffusionSettings:
    """The card's ``diffusion`` block, validated, with the variant's defaults filled in."""

    variant: str
    noise_latent: bool
    timestep: int | None  # single-step families; None = the scheduler's trailing timesteps (marigold)
    steps: int
    stochastic: bool
    prediction: str | None  # None: read from the scheduler config
    conditioner: str  # empty_prompt | cide
    decoder: str  # full | tiny
    task_embedding: tuple[float, ...] | None  # Lotus: class_labels = [sin(e), cos(e)]
    seed: int

    @classmethod
    def from_card(cls, card: ModelCard) -> DiffusionSettings:
        raw = card.extra.get("diffusion") or {}
        where = f"model card {card.path}: 'diffusion."
        variant = raw.get("variant")
        if variant not in VARIANTS:
            raise ModelLoadError(f"{where}variant' must be one of {', '.join(VARIANTS)} (got {variant!r})")
        noise_latent, timestep, steps, stochastic = VARIANTS[variant]
        steps = raw.get("steps", steps)
        if not isinstance(steps, int) or not 1 <= steps <= 50:
            raise ModelLoadError(f"{where}steps' must be an integer in [1, 50] (got {steps!r})")
        if steps > 1 and variant != "marigold":
            raise ModelLoadError(f"{where}steps' > 1 needs variant marigold: {variant} is a single-step model")
        timestep = raw.get("timestep", timestep)
        prediction = raw.get("prediction")
        if prediction is not None and prediction not in PREDICTIONS:
            raise ModelLoadError(f"{where}prediction' must be one of {', '.join(PREDICTIONS)} (got {prediction!r})")
        conditioner = raw.get("conditioner", "empty_prompt")
        if conditioner not in ("empty_prompt", "cide"):
            raise ModelLoadError(f"{where}conditioner' must be empty_prompt or cide (got {conditioner!r})")
        decoder = raw.get("decoder", "full")
        if decoder not in ("full", "tiny"):
            raise ModelLoadError(f"{where}decoder' must be full or tiny (got {decoder!r})")
        task = raw.get("task_embedding")
        return cls(variant, bool(raw.get("noise_latent", noise_latent)), timestep, steps, stochastic, prediction,
                   conditioner, decoder, tuple(float(v) for v in task) if task else None, int(raw.get("seed", 0)))


# What a weights folder may make us instantiate: a scheduler_config.json names its class, so it is checked here.
SCHEDULERS = ("DDIMScheduler", "DDPMScheduler", "LCMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler")
COMPONENTS = ("UNet2DConditionModel", "AutoencoderKL", "AutoencoderTiny", "CLIPTextModel", "CLIPTokenizer",
              "AutoModelForImageClassification", *SCHEDULERS)


def _load(kind: str, folder: Path, card: ModelCard) -> Any:
    """A diffusers / transformers component from ``folder``, or a ModelLoadError naming what is missing or broken
    (any failure of the files — truncated or random safetensors, a pickle, a config naming another class — so the
    node tries its ``backend_fallback`` entries instead of dying)."""
    if not folder.is_dir():
        raise ModelLoadError(
            f"{card.name}: {folder} is missing (model card {card.path}). The weights folder needs the diffusers "
            "layout: unet/, vae/, scheduler/ and text_encoder/ + tokenizer/ (or cide/)."
        )
    import diffusers
    import transformers

    try:
        if kind == "scheduler":  # the class the folder's own config names (DDIM for Marigold v1.1, LCM, ...)
            kind = json.loads((folder / "scheduler_config.json").read_text()).get("_class_name", "DDIMScheduler")
            if kind not in SCHEDULERS:
                raise ModelLoadError(f"{card.name}: {folder}/scheduler_config.json names class {kind!r}; "
                                     f"depth_node loads only {', '.join(SCHEDULERS)}")
        if kind not in COMPONENTS:
            raise ModelLoadError(f"{card.name}: component class {kind!r} is not one depth_node loads")
        cls = getattr(diffusers, kind, None) or getattr(transformers, kind)
        kwargs: dict[str, Any] = {}
        if issubclass(cls, diffusers.ModelMixin):

            kwargs["low_cpu_mem_usage"] = importlib.util.find_spec("accelerate") is not None
        return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - SafetensorError, UnpicklingError, OSError, ...: all mean broken files
        raise ModelLoadError(f"{card.name}: could not load {folder} ({type(exc).__name__}: {_first_line(exc)}); "
                             "the weights are damaged or not this model's: download them again") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


class CIDEConditioner:
    """ECoDepth's Comprehensive Image Detail Embedding: frozen classifier logits → MLP → softmax → weighted sum
    of learnable embeddings → one context token per image (shape 1 × 1 × dim)."""

    def __init__(self, folder: Path, card: ModelCard, device: Any, dtype: Any) -> None:
        import torch
        from safetensors.torch import load_file

        config = json.loads((folder / "config.json").read_text())
        classifier = _load("AutoModelForImageClassification", folder / "classifier", card)
        self.classifier, _, _ = prepare_module(classifier, str(device), "fp32")
        self.size = int(config.get("image_size", 224))
        self.mean = tuple(config.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(config.get("std", (0.229, 0.224, 0.225)))
        state = load_file(str(folder / "cide.safetensors"))
        self.w1, self.b1 = state["mlp.0.weight"].to(device), state["mlp.0.bias"].to(device)
        self.w2, self.b2 = state["mlp.2.weight"].to(device), state["mlp.2.bias"].to(device)
        self.embeddings = state["embeddings"].to(device)
        self.gamma = state.get("gamma", torch.ones(1)).to(device)
        self.device, self.dtype = device, dtype

    def __call__(self, rgb: np.ndarray) -> Any:
        import torch

        x = image_to_tensor(rgb, (self.size, self.size), self.mean, self.std, 1 / 255.0, self.device, torch.float32, "cubic")
        logits = self.classifier(pixel_values=x).logits
        hidden = torch.nn.functional.gelu(logits @ self.w1.T + self.b1)
        weights = torch.softmax(hidden @ self.w2.T + self.b2, dim=-1)
        context = self.gamma * (weights @ self.embeddings)
        return context[:, None, :].to(self.dtype)


class DiffusionDepthEstimator(DepthEstimator):
    """See the module docstring."""

    backend = "torch"

    def __init__(self, card: ModelCard, device: str, options: RuntimeOptions) -> None:
        import torch

        precision, compile_mode = options.precision, options.compile_mode
        if options.num_threads > 0:
            torch.set_num_threads(options.num_threads)
        self.card, self.settings = card, DiffusionSettings.from_card(card)
        folder = card.weights
        if not folder.is_dir():
            raise ModelLoadError(f"{card.name}: weights folder {folder} not found (model card {card.path}); "
                                 f"see: depth-node models download {card.name}")
        s = self.settings
        # torch.compile goes to the UNet, the bulk of the work besides the decoder (kept eager: it is called through
        # .decode(), which a compiled wrapper does not expose).
        self.unet, self._device, self._dtype = prepare_module(
            _load("UNet2DConditionModel", folder / "unet", card), device, precision,
            channels_last=options.channels_last, compile_mode=compile_mode
        )
        self.vae, _, _ = prepare_module(_load("AutoencoderKL", folder / "vae", card), device, precision)
        self.decoder = self.vae
        if s.decoder == "tiny":
            self.decoder, _, _ = prepare_module(_load("AutoencoderTiny", folder / "vae_tiny", card), device, precision)
        self.scheduler = _load("scheduler", folder / "scheduler", card)
        self.prediction = s.prediction or self.scheduler.config.prediction_type
        if self.prediction not in PREDICTIONS:
            raise ModelLoadError(f"{card.name}: unsupported prediction type {self.prediction!r}")
        expected_in = 8 if s.noise_latent else 4
        unet_config = getattr(self.unet, "_orig_mod", self.unet).config  # compiled modules wrap the original
        if unet_config.in_channels != expected_in:
            raise ModelLoadError(
                f"{card.name}: variant {s.variant} feeds the UNet {expected_in} latent channels, but unet/ takes "
                f"{unet_config.in_channels}: check 'diffusion.variant' / 'noise_latent' in the card"
            )
        self.cide = None
        if s.conditioner == "cide":
            self.cide = CIDEConditioner(folder / "cide", card, self._device, self._dtype)
            self.context = None
        else:
            self.context = self._empty_prompt(folder).to(self._device, self._dtype)
        self.class_labels = None
        if s.task_embedding is not None:
            e = torch.tensor(s.task_embedding, dtype=torch.float32)[None]
            self.class_labels = torch.cat([torch.sin(e), torch.cos(e)], dim=-1).to(self._device, self._dtype)
        self.generator = torch.Generator(device=self._device).manual_seed(s.seed)
        self.denoising_steps = 0  # multi-step variants: DDIM steps per pass (0 = the card's diffusion.steps)
        self.device, self.precision = device, precision
        self._last_rgb: np.ndarray | None = None

    def _empty_prompt(self, folder: Path) -> Any:
        """The text encoder's embedding of the empty prompt: computed once, then the encoder is dropped."""
        import torch

        tokenizer = _load("CLIPTokenizer", folder / "tokenizer", self.card)
        encoder = _load("CLIPTextModel", folder / "text_encoder", self.card).eval()
        ids = tokenizer("", padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        with torch.inference_mode():
            return encoder(ids)[0]

    @property
    def stochastic(self) -> bool:
        return bool(self.settings.stochastic)

    @property
    def multi_step(self) -> bool:
        return bool(self.settings.stochastic)  # the stochastic variants are the multi-step (DDIM) ones

    def set_denoising_steps(self, steps: int) -> None:
        if not self.multi_step:
            super().set_denoising_steps(steps)
        self.denoising_steps = steps

    def preprocess(self, rgb: np.ndarray) -> Any:
        self._last_rgb = rgb  # the CIDE conditioner sees the image too
        return rules_to_tensor(rgb, self.input_rules, self._device, self._dtype)

    def _x0(self, out: Any, x_t: Any, t: int) -> Any:
        """The clean latent from the UNet output at timestep t (x_t = the noisy latent fed beside the image)."""
        if self.prediction == "sample":
            return out
        alpha_bar = self.scheduler.alphas_cumprod[int(t)].to(out.device, out.dtype)
        a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        if self.prediction == "epsilon":
            return (x_t - b * out) / a
        return a * x_t - b * out  # v_prediction

    def export_module(self) -> Any:
        """A torch module: preprocessed image tensor → (1, h, w) prediction in [0, 1] (single-step, no CIDE)."""
        import torch

        if self.settings.stochastic or self.cide is not None:
            raise ModelLoadError(f"{self.name}: only deterministic single-step models with the empty-prompt conditioner export to ONNX")
        estimator = self

        class SingleStep(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.unet, self.vae, self.decoder = estimator.unet, estimator.vae, estimator.decoder

            def forward(self, image: torch.Tensor) -> torch.Tensor:
                return estimator._single_step(image, estimator.context)

        return SingleStep().eval()

    def _encode(self, model_input: Any) -> Any:
        return self.vae.encode(model_input).latent_dist.mode() * self.vae.config.scaling_factor

    def _unet(self, latents: Any, t: Any, context: Any) -> Any:
        return self.unet(latents, t, encoder_hidden_states=context.expand(latents.shape[0], -1, -1), class_labels=self.class_labels).sample

    def _decode(self, depth_latent: Any) -> Any:
        """Depth latent → (1, h, w) values in [0, 1]: decode, mean over the 3 channels, [-1, 1] → [0, 1]."""
        decoded = self.decoder.decode(depth_latent / self.decoder.config.scaling_factor).sample
        return (decoded.float().mean(dim=1).clamp(-1.0, 1.0) + 1.0) / 2.0

    def _single_step(self, model_input: Any, context: Any) -> Any:
        """One deterministic UNet pass at the family's timestep, from a zero noise latent where it takes one."""
        import torch

        s = self.settings
        image_latent = self._encode(model_input)
        x_t = torch.zeros_like(image_latent)
        unet_in = torch.cat([image_latent, x_t], dim=1) if s.noise_latent else image_latent
        return self._decode(self._x0(self._unet(unet_in, s.timestep, context), x_t, s.timestep))

    def _multi_step(self, model_input: Any, context: Any) -> Any:
        """Marigold: DDIM (the folder's scheduler, trailing spacing) from seeded noise, ``steps`` UNet passes."""
        import torch

        image_latent = self._encode(model_input)
        latent = torch.randn(image_latent.shape, generator=self.generator, device=self._device, dtype=self._dtype)
        self.scheduler.set_timesteps(self.denoising_steps or self.settings.steps, device=self._device)
        for t in self.scheduler.timesteps:
            out = self._unet(torch.cat([image_latent, latent], dim=1), t, context)
            latent = self.scheduler.step(out, t, latent).prev_sample
        return self._decode(latent)

    def infer(self, model_input: Any) -> Prediction:
        import torch

        with torch.inference_mode():
            context = self.cide(self._last_rgb) if self.cide is not None else self.context
            run = self._multi_step if self.settings.stochastic else self._single_step
            values = run(model_input, context)[0].cpu().numpy()
        return Prediction(values, self.card.output)

    def infer_many(self, model_inputs: list[Any]) -> list[Prediction]:
        """Members of the same input size in one batched pass (VAE, every UNet step, decoder); each stochastic member
        draws its own noise from the seeded generator, in member order. CIDE conditions on each member's own image,
        so it runs them one by one; so does a batch that does not fit in GPU memory."""
        import torch

        if self.cide is not None or len(model_inputs) < 2:
            return super().infer_many(model_inputs)
        run = self._multi_step if self.settings.stochastic else self._single_step

        def run_batch(batch: list[Any]) -> list[Prediction]:
            try:
                with torch.inference_mode():
                    values = run(torch.cat(batch), self.context).cpu().numpy()
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                return [self.infer(x) for x in batch]
            return [Prediction(v, self.card.output) for v in values]

        return self.infer_in_batches(model_inputs, run_batch)
