"""How to run a model, whatever its family: the node's runtime parameters, defaults from the parameter table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from depth_node.core.parameters import parameter_default


@dataclass(frozen=True)
class RuntimeOptions:
    """CPU threads (0 = runtime default), numeric precision of torch models, ``torch.compile`` mode for them
    (``reduce-overhead`` captures CUDA graphs for the fixed shape), and channels-last memory format (faster
    convolutions on tensor-core GPUs): the parameters ``num_threads``, ``precision``, ``torch_compile``,
    ``channels_last``."""

    num_threads: int = parameter_default("num_threads")
    precision: str = parameter_default("precision")
    compile_mode: str = parameter_default("torch_compile")
    channels_last: bool = parameter_default("channels_last")

    @classmethod
    def of(cls, config: Any) -> RuntimeOptions:
        """From a :class:`~depth_node.core.parameters.PipelineConfig`."""
        return cls(config.num_threads, config.precision, config.torch_compile, config.channels_last)
