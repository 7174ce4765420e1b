#!/usr/bin/env bash
# Install the ROS 2 command line and launch (ros2 launch / param / topic / lifecycle / node / service / pkg / run)
# into a virtual environment that has the Kilted wheels, from their sources: no wheel exists for launch, launch_ros,
# ros2launch, the ros2 CLI or composition_interfaces (a message package, built here with the rosidl wheels).
#
#   scripts/ros2_tools.sh VENV SOURCES BUILD
#     VENV     the virtual environment (make venv made it)
#     SOURCES  a folder with the sources (../shared/vendor/ros2 here; elsewhere: clone ros2/launch 3.7.1,
#              ros2/launch_ros, ros2/ros2cli 0.36.1, ros2/rosidl_runtime_py and rcl_interfaces' composition_interfaces
#              at the commits its README lists into one folder)
#     BUILD    where the composition_interfaces workspace is built (its install/setup.bash is sourced to use it)
# Then: . BUILD/setup.bash  (sets AMENT_PREFIX_PATH etc.), and ros2 launch depth_node depth.launch.py
set -euo pipefail
VENV=$(cd "$1" && pwd); SOURCES=$2; BUILD=$3
PY=$VENV/bin/python
[ -d "$SOURCES/launch" ] || { echo "no ROS 2 sources at $SOURCES (see scripts/ros2_tools.sh's header)" >&2; exit 2; }
rm -rf "$BUILD"; mkdir -p "$BUILD"; BUILD=$(cd "$BUILD" && pwd)
"$PY" -m pip install -q -r "$(dirname "$0")/../requirements-ros2.txt"
cp -r "$SOURCES" "$BUILD/src"                       # the sources may be read-only; pip and colcon write next to them
chmod -R u+w "$BUILD/src"
# The rosidl wheels' exported CMake targets name the wheel builder's Python and numpy include folders.
INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NUMPY=$("$PY" -c 'import numpy, os; print(os.path.dirname(numpy.__file__))')
VER=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
PYDIR=/opt/python/cp$VER-cp$VER
mkdir -p "$PYDIR/include" "$PYDIR/lib/python${VER:0:1}.${VER:1}/site-packages"
ln -sfn "$INC" "$PYDIR/include/python${VER:0:1}.${VER:1}"
ln -sfn "$NUMPY" "$PYDIR/lib/python${VER:0:1}.${VER:1}/site-packages/numpy"
mkdir -p "$BUILD/ws/src" && cp -r "$BUILD/src/composition_interfaces" "$BUILD/ws/src/"
(cd "$BUILD/ws" && PATH=$VENV/bin:$PATH AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV \
    "$VENV/bin/colcon" build --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" > "$BUILD/colcon.log" 2>&1) \
    || { tail -30 "$BUILD/colcon.log" >&2; exit 1; }
for pkg in launch launch_ros ros2launch ros2cli ros2pkg ros2run ros2topic ros2node ros2param ros2service ros2lifecycle rosidl_runtime_py; do
    "$PY" -m pip install -q --no-deps --no-build-isolation "$BUILD/src/$pkg"
done
cat > "$BUILD/setup.bash" <<SETUP
# the ROS 2 CLI of $VENV: its wheels, and composition_interfaces built in $BUILD/ws
export AMENT_PREFIX_PATH=$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}
. "$BUILD/ws/install/setup.bash"
export PATH=$VENV/bin:\$PATH
SETUP
touch "$BUILD/.built"
echo "ROS 2 CLI installed into $VENV; use it with: . $BUILD/setup.bash"
