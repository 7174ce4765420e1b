"""Package wiring: launch file ↔ config/depth.yaml ↔ declared parameters, package.xml, setup.py, CLI help."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from depth_node.ros.params import PARAMS, PARAMS_BY_NAME, check_value

REPO = Path(__file__).resolve().parent.parent


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _launch_literal(name: str):  # noqa: ANN202
    tree = ast.parse((REPO / "launch" / "depth.launch.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in the launch file")


def test_config_yaml_sets_exactly_the_declared_parameters_with_valid_values() -> None:
    data = yaml.safe_load((REPO / "config" / "depth.yaml").read_text())
    values = _flatten(data["/**"]["ros__parameters"])
    assert set(values) == set(PARAMS_BY_NAME)
    for name, value in values.items():
        assert check_value(PARAMS_BY_NAME[name], value) is None, name
    lines = (REPO / "config" / "depth.yaml").read_text().splitlines()
    for i, line in enumerate(lines):  # every parameter line has a comment right above it
        stripped = line.strip()
        if i > 4 and stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert lines[i - 1].strip().startswith("#"), f"config/depth.yaml line {i + 1} ({stripped}) has no comment"


def test_node_declares_the_parameter_table() -> None:
    import rclpy
    from rclpy.context import Context

    from depth_node.ros.node import DepthNode

    context = Context()
    rclpy.init(context=context)
    try:
        node = DepthNode(context=context)  # the default card is absent: the node still declares everything
        try:
            declared = {n for n in node._parameters if n not in ("use_sim_time", "start_type_description_service")}
            assert declared == set(PARAMS_BY_NAME)
            for spec in PARAMS:
                descriptor = node.describe_parameter(spec.name)
                assert descriptor.description.startswith(spec.description[:20]) and descriptor.read_only == (not spec.dynamic)
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_launch_arguments_agree_with_parameters() -> None:
    arguments = {name: default for name, default, _ in _launch_literal("ARGUMENTS")}
    parameter_arguments = _launch_literal("PARAMETER_ARGUMENTS")
    assert set(parameter_arguments) <= set(PARAMS_BY_NAME)
    assert set(parameter_arguments) <= set(arguments)
    for name in set(arguments) - set(parameter_arguments):  # process-level arguments are not parameters
        assert name not in PARAMS_BY_NAME, name
    for name in parameter_arguments:  # empty default: the params file decides
        assert arguments[name] == "", name
    assert {"namespace", "params_file", "image", "camera_info", "use_sim_time", "fastdds_profile"} <= set(arguments)


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros is not installed (no ROS distro; no wheel exists)")
def test_real_launch_description() -> None:  # runs in a ROS workspace
    spec = importlib.util.spec_from_file_location("depth_launch", REPO / "launch" / "depth.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert names == {name for name, _, _ in module.ARGUMENTS}


def test_package_xml_and_setup() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "depth_node"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "python3-numpy", "python3-opencv", "python3-pytest"} <= deps
    assert root.find("export/build_type").text == "ament_python"
    setup = (REPO / "setup.py").read_text()
    for needle in ("resource/{PACKAGE}", "launch/*.launch.py", "config/*.yaml", "config/*.xml", "models/*", "package.xml",
                   "depth_node = depth_node.ros.node:main", "depth-node = depth_node.tools.cli:main", "'test': ['pytest']".replace("'", '"')):
        assert needle in setup, needle
    assert (REPO / "resource" / "depth_node").is_file()
    requirements = (REPO / "requirements.txt").read_text()
    assert "torch==2.13.0" in requirements and "ros-rclpy[fastrtps]==" in requirements


@pytest.mark.parametrize("verb", [[], ["run"], ["demo"], ["eval"], ["bench"], ["dataset-to-bag"], ["synth"], ["train"], ["models"], ["export"],
                                  ["build-engine"]])
def test_cli_help(verb: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", *verb, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: depth-node" in result.stdout
    if verb:
        assert "examples:" in result.stdout


def test_node_help_is_rclpys() -> None:
    # The node takes only --ros-args; an unknown parameter file is a clear one-line error.
    result = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "run", "--params-file", "/nonexistent.yaml"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip() == "ERROR: parameters file not found: /nonexistent.yaml"


def test_reference_page_has_the_current_parameter_table() -> None:
    from depth_node.ros.params import markdown_table

    assert markdown_table() in (REPO / "docs" / "node.md").read_text(), "regenerate: python -m depth_node.ros.params"


@pytest.mark.skipif(not (Path(sys.executable).parent / "colcon").exists(), reason="colcon is not installed in this environment")
def test_colcon_build_installs_an_ament_python_package(tmp_path: Path) -> None:
    colcon = str(Path(sys.executable).parent / "colcon")
    result = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(REPO), "--build-base",
         str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / "install" / "depth_node"
    share = prefix / "share" / "depth_node"
    for path in ("package.xml", "launch/depth.launch.py", "config/depth.yaml", "config/fastdds_shm.xml", "models/README.md"):
        assert (share / path).is_file(), path
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "depth_node").is_file()
    for exe in ("depth_node", "depth-node"):  # where `ros2 run depth_node ...` looks
        assert (prefix / "lib" / "depth_node" / exe).is_file(), exe
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = {"PATH": "/usr/bin:/bin", "AMENT_PREFIX_PATH": str(prefix), "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import depth_node.paths as p; print(p.__file__); print(p.share_dir())"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    module_file, found_share = probe.stdout.split()
    assert module_file.startswith(str(site)) and found_share == str(share), probe.stdout + probe.stderr
    help_run = subprocess.run([sys.executable, str(prefix / "lib" / "depth_node" / "depth-node"), "synth", "--help"],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    assert help_run.returncode == 0 and "usage: depth-node synth" in help_run.stdout, help_run.stderr


def test_backend_fallback_values() -> None:
    from depth_node.ros.params import parse_backend_list

    spec = PARAMS_BY_NAME["backend_fallback"]
    assert check_value(spec, "") is None and check_value(spec, "onnxruntime:cpu, torch") is None
    assert parse_backend_list("onnxruntime:cpu, torch") == [("onnxruntime", "cpu"), ("torch", None)]
    assert "not backend[:device]" in check_value(spec, "tensorrt:gpu")
    assert "not backend[:device]" in check_value(spec, "openvino")


def test_params_file_is_read_as_the_node_reads_it(tmp_path: Path) -> None:
    from depth_node.errors import ConfigError
    from depth_node.ros.params import PARAMS, load_params_file

    shipped = load_params_file(REPO / "config" / "depth.yaml")
    assert set(shipped) == {p.name for p in PARAMS}
    path = tmp_path / "p.yaml"
    path.write_text("my_node:\n  ros__parameters:\n    scale:\n      mode: fixed\n      fixed_scale: 2\n    num_threads: 3\n")
    values = load_params_file(path, node_name="my_node", overrides={"cloud_color": False})
    assert (values["scale.mode"], values["scale.fixed_scale"], values["num_threads"], values["cloud_color"]) == ("fixed", 2.0, 3, False)
    assert values["backend"] == "auto"  # untouched parameters keep their defaults
    path.write_text("/**:\n  ros__parameters:\n    scale.mod: fixed\n")
    with pytest.raises(ConfigError, match="unknown parameter 'scale.mod' .did you mean 'scale.mode'"):
        load_params_file(path)
    path.write_text("/**:\n  ros__parameters:\n    num_threads: many\n")
    with pytest.raises(ConfigError, match="num_threads must be a int"):
        load_params_file(path)
    path.write_text("other_node:\n  ros__parameters: {}\n")
    with pytest.raises(ConfigError, match="no '/\\*\\*:' or 'depth_node:' section"):
        load_params_file(path)
