"""Native TensorRT: engines built from ONNX, cached on disk, run with torch CUDA buffers.

Cache entries are ``<cache>/<model>-<key>.engine`` plus a ``.json`` sidecar. The key hashes everything an engine
depends on — the ONNX file's SHA-256, precision, input shape, TensorRT version and GPU name — and the sidecar
records the engine file's own SHA-256. An entry whose sidecar is missing, differs, or whose engine bytes do not
hash to the recorded value is rebuilt, never loaded (a half-written or foreign engine fails in the GPU, not here).
The first build of a large model takes minutes; later starts load the cached engine.

JetPack: TensorRT comes with JetPack (``/usr/lib/python3*/dist-packages/tensorrt``); make it visible to the venv
(``python3 -m venv --system-site-packages``) rather than installing the PyPI wheel.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from depth_node.errors import ModelLoadError

DEFAULT_CACHE = Path(os.environ.get("DEPTH_NODE_ENGINE_CACHE", Path.home() / ".cache" / "depth_node" / "engines"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on."""

    onnx_sha256: str
    precision: str
    input_shape: tuple[int, ...]
    tensorrt_version: str
    gpu_name: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]


class EngineCache:
    """A folder of engines keyed by :class:`EngineKey`; ``get_or_build`` is the only way in."""

    def __init__(self, folder: Path = DEFAULT_CACHE) -> None:
        self.folder = Path(folder)

    def paths(self, name: str, key: EngineKey) -> tuple[Path, Path]:
        stem = self.folder / f"{name}-{key.digest()}"
        return stem.with_suffix(".engine"), stem.with_suffix(".json")

    def load(self, name: str, key: EngineKey) -> tuple[bytes | None, str]:
        """(engine bytes, '') if a valid entry exists, else (None, why not)."""
        engine_path, meta_path = self.paths(name, key)
        if not engine_path.is_file() or not meta_path.is_file():
            return None, "no cached engine"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None, "unreadable cache metadata"
        if meta.get("key") != json.loads(json.dumps(asdict(key))):
            return None, "cached engine was built for another model, precision, shape, TensorRT or GPU"
        data = engine_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("engine_sha256"):
            return None, "cached engine file is corrupt (hash mismatch)"
        return data, ""

    def store(self, name: str, key: EngineKey, data: bytes) -> Path:
        """Write atomically (temp file + rename), engine first, sidecar last."""
        self.folder.mkdir(parents=True, exist_ok=True)
        engine_path, meta_path = self.paths(name, key)
        for path, payload in ((engine_path, data), (meta_path, json.dumps({"key": asdict(key), "engine_sha256": hashlib.sha256(data).hexdigest()}, indent=1).encode())):
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.replace(tmp, path)
        return engine_path

    def get_or_build(self, name: str, key: EngineKey, build: Callable[[], bytes]) -> tuple[bytes, str]:
        """(engine bytes, 'cache hit' | 'built: <why the cache was not used>')."""
        data, why = self.load(name, key)
        if data is not None:
            return data, "cache hit"
        data = build()
        self.store(name, key, data)
        return data, f"built: {why}"


def import_tensorrt() -> Any:
    """The tensorrt module, or a ModelLoadError saying how to install it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise ModelLoadError("TensorRT is not installed (pip install tensorrt on x86_64; JetPack ships it on Jetson)") from None
    return trt


def build_engine(onnx_path: Path, precision: str, input_shape: tuple[int, ...], workspace_gb: float = 4.0) -> bytes:
    """Serialize a TensorRT engine for ``onnx_path`` at the explicit ``input_shape`` (fp32 or fp16)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision != "fp32":
        raise ModelLoadError(f"TensorRT precision must be fp32 or fp16, got {precision!r}")
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        profile.set_shape(tensor.name, input_shape, input_shape, input_shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelLoadError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above)")
    return bytes(serialized)


class TensorrtRunner:
    """One deserialized engine with torch CUDA I/O buffers; ``__call__`` takes and returns CUDA tensors."""

    def __init__(self, engine_bytes: bytes) -> None:
        import torch

        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise ModelLoadError("TensorRT needs a CUDA GPU, and torch sees none")
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise ModelLoadError("TensorRT could not deserialize the engine (built by another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self.stream = torch.cuda.Stream()
        self._torch_dtype = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32}

    def __call__(self, image: Any) -> list[Any]:
        import torch

        name = self.inputs[0]
        image = image.contiguous()
        self.context.set_input_shape(name, tuple(image.shape))
        self.context.set_tensor_address(name, image.data_ptr())
        outputs = []
        for out in self.outputs:
            shape = tuple(self.context.get_tensor_shape(out))
            tensor = torch.empty(shape, dtype=self._torch_dtype[self.engine.get_tensor_dtype(out)], device=image.device)
            self.context.set_tensor_address(out, tensor.data_ptr())
            outputs.append(tensor)
        self.stream.wait_stream(torch.cuda.current_stream())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        torch.cuda.current_stream().wait_stream(self.stream)
        return outputs


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no-gpu"


def engine_key(onnx_path: Path, precision: str, input_shape: tuple[int, ...]) -> EngineKey:
    return EngineKey(sha256_file(onnx_path), precision, tuple(int(v) for v in input_shape), import_tensorrt().__version__, gpu_name())

