"""Package wiring: launch file ↔ config/depth.yaml ↔ declared parameters, package.xml, setup.py, CLI help."""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from depth_node.core.parameters import PARAMS, PARAMS_BY_NAME, markdown_table, params_yaml

REPO = Path(__file__).resolve().parent.parent


def _launch_literal(name: str):  # noqa: ANN202
    tree = ast.parse((REPO / "launch" / "depth.launch.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in the launch file")


def test_config_yaml_is_generated_from_the_parameter_table() -> None:
    assert (REPO / "config" / "depth.yaml").read_text() == params_yaml(), "regenerate: python -m depth_node.core.parameters --write"
    data = yaml.safe_load((REPO / "config" / "depth.yaml").read_text())["/**"]["ros__parameters"]
    assert data["scale"]["mode"] == "model" and data["max_range"] == 20.0 and data["tta_scales"] == [1.0, 0.75, 1.25]


def test_node_declares_the_parameter_table() -> None:
    import rclpy
    from rclpy.context import Context

    from depth_node.ros.node import DepthNode

    context = Context()
    rclpy.init(context=context)
    try:
        node = DepthNode(context=context)  # the default card is absent: the node still declares everything
        try:
            declared = {n for n in node._parameters if n not in ("use_sim_time", "start_type_description_service")
                        and not n.startswith("qos_overrides.")}
            assert declared == set(PARAMS_BY_NAME)
            for spec in PARAMS:
                descriptor = node.describe_parameter(spec.name)
                assert descriptor.description.startswith(spec.doc[:20]) and descriptor.read_only == (not spec.dynamic)
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


def test_package_xml_and_setup() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "depth_node"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "python3-numpy", "python3-opencv", "python3-pytest"} <= deps
    # only rosdep keys that exist (rosdistro's base.yaml / python.yaml), so `rosdep install -y` does not stop
    known = {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "rcl_interfaces", "ament_index_python", "launch",
             "launch_ros", "lifecycle_msgs", "python3-numpy", "python3-opencv", "python3-yaml", "python3-matplotlib", "python3-onnxruntime-pip",
             "python3-pytest"}
    assert deps <= known, deps - known
    readme = (REPO / "README.md").read_text()
    assert "pip install rosbags ai-edge-litert" in readme and "make ros2" in readme
    assert root.find("export/build_type").text == "ament_python"
    setup = (REPO / "setup.py").read_text()
    for needle in ("resource/{PACKAGE}", "launch/*.launch.py", "config/*.yaml", "config/*.xml", "models/*", "package.xml",
                   "depth_node = depth_node.stop_signals:run_node", "depth-node = depth_node.tools.cli:main", "'test': ['pytest']".replace("'", '"')):
        assert needle in setup, needle
    assert (REPO / "resource" / "depth_node").is_file()
    requirements = (REPO / "requirements.txt").read_text()
    assert "torch==2.13.0" in requirements and "ros-rclpy[fastrtps]==" in requirements


@pytest.mark.parametrize("verb", [[], ["run"], ["demo"], ["eval"], ["bench"], ["dataset-to-bag"], ["synth"], ["train"], ["models"], ["export"],
                                  ["build-engine"], ["bag-recover"]])
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
    assert markdown_table() in (REPO / "docs" / "node.md").read_text(), "regenerate: python -m depth_node.core.parameters --write"


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
