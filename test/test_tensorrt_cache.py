"""The TensorRT engine cache: keyed by model, precision, shape, TensorRT and GPU; a mismatched or corrupt
entry is rebuilt, never loaded. (Engines themselves are built in test_gpu.py, on a GPU.)"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from depth_node.backends.tensorrt_engine import EngineCache, EngineKey

KEY = EngineKey("ab" * 32, "fp16", (1, 3, 392, 518), "10.13.0", "NVIDIA H100 80GB HBM3")


def builder(payload: bytes, calls: list) -> object:  # noqa: ANN001
    def build() -> bytes:
        calls.append(1)
        return payload

    return build


def test_hit_after_build(tmp_path: Path) -> None:
    cache, calls = EngineCache(tmp_path), []
    data, how = cache.get_or_build("m", KEY, builder(b"engine-1", calls))
    assert (data, how, len(calls)) == (b"engine-1", "built: no cached engine", 1)
    data, how = cache.get_or_build("m", KEY, builder(b"never", calls))
    assert (data, how, len(calls)) == (b"engine-1", "cache hit", 1)


def test_every_key_field_changes_the_entry(tmp_path: Path) -> None:
    cache, calls = EngineCache(tmp_path), []
    cache.get_or_build("m", KEY, builder(b"engine-1", calls))
    for change in ({"onnx_sha256": "cd" * 32}, {"precision": "fp32"}, {"input_shape": (1, 3, 518, 518)},
                   {"tensorrt_version": "10.14.0"}, {"gpu_name": "Orin"}):
        data, how = cache.get_or_build("m", replace(KEY, **change), builder(b"other", calls))
        assert data == b"other" and how.startswith("built"), change
    assert len(calls) == 6


def test_corrupt_or_foreign_entries_are_rebuilt(tmp_path: Path) -> None:
    cache, calls = EngineCache(tmp_path), []
    cache.get_or_build("m", KEY, builder(b"engine-1", calls))
    engine_path, meta_path = cache.paths("m", KEY)
    engine_path.write_bytes(b"engine-1 but truncated")
    data, how = cache.get_or_build("m", KEY, builder(b"engine-2", calls))
    assert data == b"engine-2" and "corrupt" in how
    meta_path.write_text(meta_path.read_text().replace("10.13.0", "9.0.0"))  # an entry written for another TensorRT
    data, how = cache.get_or_build("m", KEY, builder(b"engine-3", calls))
    assert data == b"engine-3" and "another model" in how
    meta_path.unlink()
    data, how = cache.get_or_build("m", KEY, builder(b"engine-4", calls))
    assert data == b"engine-4" and len(calls) == 4
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temp files


def test_build_engine_cli_without_tensorrt_is_a_clear_error(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        import pytest

        pytest.skip("TensorRT is installed here: test_gpu.py covers the real build")
    from _models import write_card

    (tmp_path / "m.onnx").write_bytes(b"x")
    card = write_card(tmp_path / "m.yaml", "m.onnx", {"space": "depth", "invariance": "metric"}, {"size": [64, 64]})
    result = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "build-engine", str(card)], capture_output=True, text=True)
    assert result.returncode == 2 and "ERROR:" in result.stderr, result.stderr
    assert "TensorRT is not installed" in result.stderr or "needs a CUDA GPU" in result.stderr
