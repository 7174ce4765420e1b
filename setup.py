"""ament_python package: `colcon build` in a ROS 2 workspace, or `pip install -e .` in a plain venv."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "depth_node"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", [f for f in glob("models/*") if not f.endswith("/")]),
    ],
    install_requires=["setuptools", "numpy", "opencv-python-headless", "pyyaml", "onnxruntime", "rosbags", "simplejpeg", "matplotlib"],
    extras_require={
        "test": ["pytest"],
        "torch": ["torch==2.13.0"],  # pinned: a floating torch pulls a multi-GB CUDA build
        "depth_anything": ["torch==2.13.0", "transformers", "huggingface-hub"],
        "diffusion": ["torch==2.13.0", "transformers", "diffusers", "huggingface-hub"],
        "tflite": ["ai-edge-litert"],
        "ray": ["ray==2.60.0"],  # depth-node eval --ray
    },
    zip_safe=True,
    maintainer="depth_node maintainers",
    maintainer_email="maintainers@depth-node.invalid",
    description="Accelerated monocular depth for ROS 2 (metric depth, confidence, point clouds, diagnostics).",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "depth_node = depth_node.stop_signals:run_node",
            "depth-node = depth_node.tools.cli:main",
        ],
    },
)
