"""What made a result: depth_node's version, the git commit of the checkout it ran from, the date, the command."""

from __future__ import annotations

import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from depth_node import __version__

CHECKOUT = Path(__file__).resolve().parent.parent.parent  # the folder holding depth_node/, when it is a git checkout


def commit() -> str | None:
    """``git describe --always --dirty`` of the checkout depth_node runs from; None when installed (no .git)."""
    if not (CHECKOUT / ".git").exists():
        return None
    try:
        run = subprocess.run(["git", "-C", str(CHECKOUT), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return run.stdout.strip() or None if run.returncode == 0 else None


def command() -> str:
    """The command line as the user typed it (``depth-node …`` for ``python -m depth_node.tools.cli``)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("cli.py", "depth-node"):
        argv[0] = "depth-node"
    return shlex.join(argv)


def provenance() -> dict[str, Any]:
    return {"depth_node_version": __version__, "commit": commit(),
            "date_utc": datetime.now(timezone.utc).replace(microsecond=0).isoformat(), "command": command()}
