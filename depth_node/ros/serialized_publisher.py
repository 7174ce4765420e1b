"""Publishing an already-serialized (CDR) message straight from its buffer, without copying it in Python or rclpy.

rclpy's ``Publisher.publish(bytes)`` takes ``bytes`` only and hands them to C++ as a ``std::string`` by value
(rclpy ``publisher.cpp``: ``publish_raw(std::string msg)``): a message laid out in a numpy buffer is copied once
into ``bytes`` and once more into the string before the middleware makes its own copy. For the ~8 MB a 640×480
frame's outputs take, that is two passes over 8 MB per frame (measured: 4.9 MB cloud, 2.45 ms through
``bytes`` + ``publish`` vs 1.0 ms from the buffer; docs/benchmarks.md).

:class:`SerializedPublisher` passes the buffer's address to ``rcl_publish_serialized_message`` — the C API that
rclcpp's ``GenericPublisher`` uses — through ctypes on the very ``librcl`` this process loaded for rclpy, with the
rclpy publisher's own ``rcl_publisher_t`` (``Publisher.handle.pointer``), held the way rclpy holds it while
publishing. ctypes releases the GIL for the call, so the executor thread runs meanwhile. Where that library is
not found (not Linux, a static build) it falls back to ``Publisher.publish(bytes(buffer))``: same messages,
slower.
"""

from __future__ import annotations

import ctypes
import re
from functools import lru_cache
from typing import Any

import numpy as np
import rclpy.impl.implementation_singleton  # noqa: F401  (rclpy's extension, and with it librcl, is loaded)

_RCL_RETURNS = {1: "RCL_RET_ERROR", 10: "RCL_RET_BAD_ALLOC", 11: "RCL_RET_INVALID_ARGUMENT", 101: "RCL_RET_NOT_INIT",
                300: "RCL_RET_PUBLISHER_INVALID"}


class _Allocator(ctypes.Structure):  # rcutils_allocator_t: unused for publishing, zero as rmw's initializer makes it
    _fields_ = [("allocate", ctypes.c_void_p), ("deallocate", ctypes.c_void_p), ("reallocate", ctypes.c_void_p),
                ("zero_allocate", ctypes.c_void_p), ("state", ctypes.c_void_p)]


class _SerializedMessage(ctypes.Structure):  # rcl_serialized_message_t = rcutils_uint8_array_t
    _fields_ = [("buffer", ctypes.c_void_p), ("buffer_length", ctypes.c_size_t), ("buffer_capacity", ctypes.c_size_t),
                ("allocator", _Allocator)]


class _ErrorString(ctypes.Structure):  # rcutils_error_string_t, returned by value
    _fields_ = [("str", ctypes.c_char * 1024)]


def _loaded(name: str) -> str | None:
    """Path of the shared library ``name`` (e.g. ``librcl``) as this process mapped it, or None."""
    pattern = re.compile(rf"/{re.escape(name)}\.so(\.\d+)*$")
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if pattern.search(path):
                    return path
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def _rcl() -> tuple[Any, Any] | None:
    """(rcl_publish_serialized_message, rcutils error reader or None) from the loaded librcl, or None."""
    

    path = _loaded("librcl")
    if path is None:
        return None
    try:
        publish = ctypes.CDLL(path).rcl_publish_serialized_message
    except (OSError, AttributeError):
        return None
    publish.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SerializedMessage), ctypes.c_void_p]
    publish.restype = ctypes.c_int
    error = None
    rcutils = _loaded("librcutils")
    if rcutils is not None:
        try:
            library = ctypes.CDLL(rcutils)
            library.rcutils_get_error_string.restype = _ErrorString

            def error() -> str:
                text = library.rcutils_get_error_string().str.decode(errors="replace")
                library.rcutils_reset_error()
                return text
        except (OSError, AttributeError):
            error = None
    return publish, error


def zero_copy_available() -> bool:
    """Whether :class:`SerializedPublisher` publishes from the buffer itself (False: through ``bytes``)."""
    return _rcl() is not None


class SerializedPublisher:
    """Publishes CDR buffers (``bytes`` or a C-contiguous uint8 numpy array) on an rclpy ``publisher``."""

    def __init__(self, publisher: Any, zero_copy: bool = True) -> None:
        self.publisher = publisher
        self._rcl = _rcl() if zero_copy else None

    @property
    def zero_copy(self) -> bool:
        return self._rcl is not None

    def publish(self, serialized: bytes | np.ndarray) -> None:
        """Publish one serialized message of this publisher's type (its CDR bytes, encapsulation header first)."""
        if self._rcl is None:
            self.publisher.publish(serialized if isinstance(serialized, bytes) else serialized.tobytes())
            return
        buffer = np.frombuffer(serialized, np.uint8) if isinstance(serialized, bytes) else serialized
        if buffer.dtype != np.uint8 or buffer.ndim != 1 or not buffer.flags.c_contiguous:
            raise ValueError(f"a serialized message is a contiguous uint8 vector, got {buffer.dtype} {buffer.shape}")
        message = _SerializedMessage(buffer.ctypes.data, buffer.nbytes, buffer.nbytes)
        publish, error = self._rcl
        with self.publisher.handle:  # as rclpy's publish(): the rcl_publisher_t stays alive during the call
            code = publish(self.publisher.handle.pointer, ctypes.byref(message), None)
        if code != 0:
            detail = error() if error is not None else ""
            raise RuntimeError(f"publishing on {self.publisher.topic_name} failed: {_RCL_RETURNS.get(code, code)}"
                               + (f" ({detail})" if detail else ""))
