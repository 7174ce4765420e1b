"""The package's error types: each says what went wrong and, where it can, what to do next."""


class DepthNodeError(Exception):
    """Base class of every error depth_node raises on purpose."""


class InputError(DepthNodeError):
    """A frame or camera_info that cannot be used (bad encoding, size, data). The frame is skipped."""


class ModelLoadError(DepthNodeError):
    """A model card or weights file that is missing, malformed or rejected by its runtime."""


class ConfigError(DepthNodeError):
    """A parameter or card value outside what depth_node supports."""
