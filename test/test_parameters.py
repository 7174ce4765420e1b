"""Parameters as users type them: one table of inputs, each row run through the node (in-process, rcl parsing
the real command line), ``depth-node run`` (its own process) and ``depth-node eval``, which must give the same
answer: the value the node runs with, or the same one-line error with exit code 2 and no traceback."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from depth_node.core import parameters
from depth_node.core.parameters import PARAMS, ParameterError, PipelineConfig, resolve
from depth_node.ros import arguments
from depth_node.ros.harness import NodeProcess
from depth_node.ros.node import DepthNode
from depth_node.tools import cli

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "depth_node.tools.cli"]


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    assignments: tuple[str, ...] = ()      # -p NAME:=VALUE
    params_file: str | None = None         # the text of a parameters file given with the command
    expect: dict | None = None             # the values the node runs with, or None: refused with `error`
    error: str = ""                        # the one line after "ERROR: " ({file} = the file's path)
    rcl_reads_it: bool = True              # rcl itself can parse the command line (else only our check runs first)


ROWS = [
    Row("integer for a double", ("max_range:=5",), expect={"max_range": 5.0}),
    Row("double", ("max_range:=5.5",), expect={"max_range": 5.5}),
    Row("integers in a double list", ("tta_scales:=[1, 2]",), expect={"tta_scales": [1.0, 2.0]}),
    Row("rule between two parameters met", ("scale.mode:=ground_plane", "scale.camera_height:=1"),
        expect={"scale.mode": "ground_plane", "scale.camera_height": 1.0}),
    Row("integer for a double in a file", params_file="/**:\n  ros__parameters:\n    max_range: 7\n", expect={"max_range": 7.0}),
    Row("nested and dotted keys in a file", params_file="depth_node:\n  ros__parameters:\n    scale:\n      mode: fixed\n"
        "    scale.fixed_scale: 2\n", expect={"scale.mode": "fixed", "scale.fixed_scale": 2.0}),
    Row("a file, then -p wins", ("max_range:=9.0",), "/**:\n  ros__parameters:\n    max_range: 7.0\n", expect={"max_range": 9.0}),
    Row("bool for a double", ("max_range:=true",), error="-p max_range:=true: max_range must be a number in [0.01, 1000] (m), got true"),
    Row("word for a double", ("max_range:=far",), error="-p max_range:=far: max_range must be a number in [0.01, 1000] (m), got 'far'"),
    Row("out of range", ("max_range:=0.0",), error="-p max_range:=0.0: max_range must be a number in [0.01, 1000] (m), got 0.0"),
    Row("double for an integer", ("cloud_decimation:=2.5",),
        error="-p cloud_decimation:=2.5: cloud_decimation must be an integer in [1, 16], got 2.5"),
    Row("not a choice", ("depth_encoding:=16UC2",), error="-p depth_encoding:=16UC2: depth_encoding must be one of 32FC1, 16UC1, got '16UC2'"),
    Row("integer for a bool", ("cloud_color:=1",), error="-p cloud_color:=1: cloud_color must be true or false, got 1"),
    Row("typo in a name", ("max_rnage:=5.0",), error="-p max_rnage:=5.0: unknown parameter 'max_rnage' (did you mean 'max_range'?); "
        "the parameters are listed in docs/node.md and config/depth.yaml"),
    Row("rule between two parameters broken", ("min_range:=30.0",), error="-p min_range:=30.0: need min_range < max_range, got 30 and 20"),
    Row("a mode without what it needs", ("scale.mode:=ground_plane",), error="-p scale.mode:=ground_plane: scale.mode ground_plane needs "
        "scale.camera_height: the optical centre's height above the floor in metres (got 0)"),
    Row("bad backend_fallback entry", ("backend_fallback:=openvino",), error="-p backend_fallback:=openvino: backend_fallback must be "
        "entries backend[:device] with backend in auto, onnxruntime, tensorrt, torch, tflite and device in cpu, cuda, tensorrt "
        "(bad entry 'openvino'), got 'openvino'"),
    Row("mixed list", ("tta_scales:=[1, a]",), error="-p tta_scales:=[1, a]: tta_scales must be a list of one or more numbers, "
        "each in [0.05, 4], got [1, 'a']", rcl_reads_it=False),
    Row("infinite list entry", ("tta_scales:=[1.0, .inf]",), error="-p tta_scales:=[1.0, .inf]: tta_scales must be a list of "
        "one or more numbers, each in [0.05, 4], got [1.0, inf]"),
    Row("list entry out of range", ("tta_scales:=[1, 12]",), error="-p tta_scales:=[1, 12]: tta_scales must be a list of "
        "one or more numbers, each in [0.05, 4], got [1, 12]"),
    Row("string for a double in a file", params_file="/**:\n  ros__parameters:\n    max_range: '5'\n",
        error="parameters file {file}: max_range must be a number in [0.01, 1000] (m), got '5'"),
    Row("typo in a file", params_file="/**:\n  ros__parameters:\n    scale.mod: fixed\n",
        error="parameters file {file}: unknown parameter 'scale.mod' (did you mean 'scale.mode'?); the parameters are listed in "
              "docs/node.md and config/depth.yaml"),
    Row("malformed file", params_file="/**:\n  ros__parameters:\n    max_range: [1,\n",
        error="parameters file {file}: not valid YAML at line 4, column 1: expected the node content, but found '<stream end>'",
        rcl_reads_it=False),
    Row("a file that is a list", params_file="- max_range: 5\n",
        error="parameters file {file}: must be a mapping of node names ('/**:' or 'depth_node:') to 'ros__parameters:' mappings",
        rcl_reads_it=False),
]
IDS = [row.name for row in ROWS]


def _file(row: Row, tmp_path: Path) -> Path | None:
    if row.params_file is None:
        return None
    path = tmp_path / "params.yaml"
    path.write_text(row.params_file)
    return path


def _ros_args(row: Row, path: Path | None) -> list[str]:
    args = ["--params-file", str(path)] if path else []
    for item in row.assignments:
        args += ["-p", item]
    return args


def _expected_line(row: Row, path: Path | None) -> str:
    return "ERROR: " + row.error.replace("{file}", str(path))


def test_the_table_is_long_enough_and_covers_both_answers() -> None:
    assert len(ROWS) >= 15 and sum(r.expect is None for r in ROWS) >= 10 and sum(r.expect is not None for r in ROWS) >= 5


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_the_node(row: Row, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _file(row, tmp_path)
    argv = ["depth_node", "--ros-args", *_ros_args(row, path)]
    if row.expect is None:  # the node's main: one line, exit 2, before rcl or the model is touched
        from depth_node.ros.node import main

        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(_expected_line(row, path)) and err.count("\n") == 1 and "Traceback" not in err, err
    if not row.rcl_reads_it:
        return
    context = Context()
    rclpy.init(args=argv, context=context)  # rcl parses the command line: the overrides the node receives
    try:
        if row.expect is None:
            with pytest.raises(ParameterError) as caught:
                DepthNode(context=context, origins=arguments.ros_origins(argv))
            assert "ERROR: " + str(caught.value) == _expected_line(row, path)
            return
        node = DepthNode(context=context, origins=arguments.ros_origins(argv))
        try:
            for name, value in row.expect.items():
                assert node.get_parameter(name).value == value, name
                assert node.config.parameters()[name] == value, name
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("row", [r for r in ROWS if r.expect is None], ids=[r.name for r in ROWS if r.expect is None])
def test_depth_node_run(row: Row, tmp_path: Path) -> None:
    path = _file(row, tmp_path)
    command = [*CLI, "run", *(["--params-file", str(path)] if path else []), "--ros-args"]
    for item in row.assignments:
        command += ["-p", item]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(_expected_line(row, path)) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_depth_node_eval(row: Row, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _file(row, tmp_path)
    if row.expect is not None:  # what eval runs with: the same load the verb calls
        config = parameters.load(path, row.assignments)
        for name, value in row.expect.items():
            assert config.parameters()[name] == value, name
        return
    args = ["eval", str(tmp_path / "no_bag_needed"), "-o", str(tmp_path / "out"), *(["--params", str(path)] if path else [])]
    for item in row.assignments:
        args += ["-p", item]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(_expected_line(row, path)) and err.count("\n") == 1, err


def test_run_starts_with_an_integer_for_a_double(tmp_path: Path) -> None:
    """`depth-node run --ros-args -p max_range:=5` runs, with max_range 5.0 (asked over the parameter services)."""
    with NodeProcess(["max_range:=5"], log_path=tmp_path / "node.log") as node:
        node.wait_ready(timeout_s=60, settle_s=0.0)
        client = AsyncParameterClient(node.node, f"{node.namespace}/depth_node")
        assert client.wait_for_services(timeout_sec=10.0)
        future = client.get_parameters(["max_range"])
        node.spin_until(future.done, 10.0)
        value = future.result().values[0]
        assert (value.type, value.double_value) == (Parameter.Type.DOUBLE.value, 5.0)
        future = client.set_parameters([Parameter("max_range", value=7)])  # ros2 param set /depth_node max_range 7
        node.spin_until(future.done, 10.0)
        assert future.result().results[0].successful
        future = client.set_parameters([Parameter("max_range", value=True)])
        node.spin_until(future.done, 10.0)
        assert not future.result().results[0].successful
        future = client.get_parameters(["max_range"])
        node.spin_until(future.done, 10.0)
        assert future.result().values[0].double_value == 7.0
    assert "Traceback" not in node.log()


def test_run_time_changes_are_checked_like_start_up(conv_card: Path) -> None:
    context = Context()
    rclpy.init(context=context)
    node = DepthNode(context=context, parameter_overrides=[Parameter("model_card", value=str(conv_card))])
    try:
        assert node.set_parameters([Parameter("max_range", value=6)])[0].successful     # an integer for a double
        assert node.config.max_range == 6.0 and node.get_parameter("max_range").value == 6.0
        refused = node.set_parameters([Parameter("min_range", value=50.0)])[0]
        assert not refused.successful and "need min_range < max_range" in refused.reason and node.config.min_range == 0.0
        refused = node.set_parameters([Parameter("tta_scales", value=[1.0, 12.0])])[0]      # bounded, finite lists
        assert not refused.successful and "each in [0.05, 4]" in refused.reason
        refused = node.set_parameters([Parameter("model_card", value="other")])[0]
        assert not refused.successful and "read-only" in refused.reason
    finally:
        node.close()
        node.destroy_node()
        rclpy.shutdown(context=context)


# ------------------------------------------------------------------------------------------ one declaration
# Keyword defaults named like a parameter that are not the parameter's default, with why.
KERNEL_DEFAULTS = {
    ("backproject", "min_range"): "a geometry kernel: no clipping unless asked (the pipeline passes the parameters)",
    ("backproject", "max_range"): "a geometry kernel: no clipping unless asked (the pipeline passes the parameters)",
    ("colorize_depth", "colormap"): "a picture kernel, also used by eval's thumbnails (the pipeline passes colormap)",
    ("prepare_module", "channels_last"): "a torch helper: memory format untouched unless asked (estimators pass it)",
    ("prepare_module", "compile_mode"): "a torch helper: not compiled unless asked (estimators pass torch_compile)",
}


def test_no_second_default_anywhere() -> None:
    """Every default lives in PARAMS: the config object, the generated YAML and the node all come from it; in the
    package, a dataclass field named like a parameter takes its default from the table (``parameter_default``), and a
    keyword argument named like one defaults to None (= the parameter's or the config's value) or is required."""
    import ast

    config = PipelineConfig()
    for param in PARAMS:
        assert getattr(config, param.field) == param.default, param.name
    shipped = parameters.read_params_file(REPO / "config" / "depth.yaml")
    assert resolve([("config/depth.yaml", shipped)]) == config
    fields = {p.field for p in PARAMS} | {"torch_compile", "compile_mode"}
    offenders = []
    for path in (REPO / "depth_node").rglob("*.py"):
        if path.name == "parameters.py":
            continue
        where = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                for item in node.body:
                    if (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.target.id in fields
                            and item.value is not None and "parameter_default" not in ast.unparse(item.value)):
                        offenders.append(f"{where}:{item.lineno} field {item.target.id} = {ast.unparse(item.value)}")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                positional = args.posonlyargs + args.args
                pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
                pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
                for arg, default in pairs:
                    if (arg.arg in fields and not (isinstance(default, ast.Constant) and default.value is None)
                            and (node.name, arg.arg) not in KERNEL_DEFAULTS):
                        offenders.append(f"{where}:{node.lineno} {node.name}({arg.arg}={ast.unparse(default)})")
    assert not offenders, "a parameter default outside core/parameters.py:\n" + "\n".join(offenders)


def test_coerce_is_strict_but_takes_integers_for_doubles() -> None:
    spec = parameters.PARAMS_BY_NAME
    assert parameters.coerce(spec["max_range"], 5) == 5.0 and isinstance(parameters.coerce(spec["max_range"], 5), float)
    assert parameters.coerce(spec["scale.ground_region"], [0, 0.5, 1, 1]) == (0.0, 0.5, 1.0, 1.0)
    for name, bad in (("max_range", float("nan")), ("scale.ground_region", [0.1, 0.2, 0.3]), ("num_threads", True),
                      ("tta_scales", []), ("model_card", 3)):
        with pytest.raises(ParameterError, match=name.replace(".", r"\.")):
            parameters.coerce(spec[name], bad)
