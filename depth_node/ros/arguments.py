"""The node's ``--ros-args`` read before rcl reads them, so a bad parameter is one clear line, not rcl's error.

rcl parses ``--params-file`` and ``-p`` itself and, for a value it cannot type or a file it cannot parse, fails
inside ``rclpy.init`` with an ``RCLError`` traceback. :func:`check` reads the same arguments first, through the
same :func:`depth_node.core.parameters.resolve` that ``depth-node eval`` uses, and says where each value came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from depth_node.core.parameters import ParameterError, parse_assignment, read_params_file, resolve

# --ros-args flags that take one value (rcl's arguments.h); the others take none.
_WITH_VALUE = {"-p", "--param", "--params-file", "-r", "--remap", "-e", "--enclave", "--log-level",
               "--log-config-file", "--log-file-name"}


@dataclass
class RosArguments:
    """What the ``--ros-args`` sections of a command line set for the node."""

    params_files: list[str] = field(default_factory=list)
    assignments: list[str] = field(default_factory=list)  # "-p NAME:=VALUE" texts, in order
    node_name: str = "depth_node"


def ros_arguments(argv: Sequence[str]) -> RosArguments:
    """The parameter files, ``-p`` overrides and node name (``-r __node:=NAME``) in ``argv``'s ``--ros-args``
    sections (each runs to ``--`` or the end)."""
    found = RosArguments()
    inside, k = False, 0
    while k < len(argv):
        arg = argv[k]
        if arg == "--ros-args":
            inside = True
        elif arg == "--":
            inside = False
        elif inside and arg in _WITH_VALUE and k + 1 < len(argv):
            value = argv[k + 1]
            if arg in ("-p", "--param"):
                found.assignments.append(value)
            elif arg == "--params-file":
                found.params_files.append(value)
            elif arg in ("-r", "--remap") and value.partition(":=")[0] in ("__node", "__name"):
                found.node_name = value.partition(":=")[2]
            k += 1
        k += 1
    return found


def _layers(args: RosArguments) -> list[tuple[str, dict[str, Any]]]:
    layers: list[tuple[str, dict[str, Any]]] = [
        (f"parameters file {path}", read_params_file(path, args.node_name, require_section=False)) for path in args.params_files]
    for text in args.assignments:
        name, value = parse_assignment(text)
        layers.append((f"-p {text}", {name: value}))
    return layers


def check(argv: Sequence[str]) -> dict[str, str]:
    """Check every parameter ``argv`` gives the node (files in order, then ``-p``, as rcl applies them); returns
    {parameter name: where its value came from}. Raises :class:`~depth_node.core.parameters.ParameterError`."""
    layers = _layers(ros_arguments(argv))
    resolve(layers)
    return {name: origin for origin, layer in layers for name in layer}


def ros_origins(argv: Sequence[str]) -> dict[str, str]:
    """{parameter name: where its value came from} for the node's error lines, checking nothing (the node does)."""
    args = ros_arguments(argv)
    origins = {}
    for path in args.params_files:
        try:
            origins.update({name: f"parameters file {path}" for name in read_params_file(path, args.node_name, require_section=False)})
        except ParameterError:
            continue
    for text in args.assignments:
        origins[text.partition(":=")[0].strip()] = f"-p {text}"
    return origins
