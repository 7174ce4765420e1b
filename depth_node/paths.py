"""Where the package's data (config/, launch/, models/) lives, in a colcon install, a pip install or a checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:
    from ament_index_python.packages import (
        PackageNotFoundError,
        get_package_share_directory,
    )
except ImportError:  # a pip install without the ROS wheels: the other two places below
    get_package_share_directory = None

PACKAGE = "depth_node"


def share_dir() -> Path:
    """The folder holding config/, launch/ and models/.

    Order: the ament index (colcon workspace, or AMENT_PREFIX_PATH set), ``<prefix>/share/depth_node``
    (a plain pip install), then the source checkout this module was imported from (editable install, tests).
    """
    if get_package_share_directory is not None:
        try:
            return Path(get_package_share_directory(PACKAGE))
        except (PackageNotFoundError, LookupError, ValueError, OSError):  # OSError: AMENT_PREFIX_PATH unset
            pass
    installed = Path(sys.prefix) / "share" / PACKAGE
    if (installed / "config").is_dir():
        return installed
    return Path(__file__).resolve().parent.parent


def config_file(name: str) -> Path:
    """A file of the package's config/ folder."""
    return share_dir() / "config" / name


def models_dir() -> Path:
    """The package's models/ folder (model cards and shipped weights)."""
    return share_dir() / "models"


def resolve_card(spec: str) -> Path:
    """A ``model_card`` parameter value → card path: an existing path as given (``~`` expanded), else, for a plain
    name (no folder in it), ``models/<spec>.yaml`` or ``models/<spec>`` of the package. A value with a folder in it
    is only ever a path: ``../config/depth`` does not reach out of models/."""
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return path.resolve()
    if is_card_name(spec):
        for candidate in (models_dir() / f"{spec}.yaml", models_dir() / spec):
            if candidate.is_file():
                return candidate
    return path


def is_card_name(spec: str) -> bool:
    """True for a name of the package's models/ (``fastdepth``, ``default.yaml``), False for anything with a folder,
    ``..`` or ``~`` in it."""
    return bool(spec) and Path(spec).name == spec and spec not in (".", "..") and not spec.startswith("~")
