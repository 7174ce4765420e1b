"""Launch the depth node for one camera.

    ros2 launch depth_node depth.launch.py
    ros2 launch depth_node depth.launch.py namespace:=front image:=/front/color/image_raw \
        camera_info:=/front/color/camera_info model_card:=/path/to/card.yaml
    ros2 launch depth_node depth.launch.py lifecycle:=true autostart:=false   # for a lifecycle manager (Nav2)

Parameters come from ``params_file`` (default: the package's config/depth.yaml); a parameter argument below
left empty keeps the file's value, a non-empty one overrides it. Without a ROS distro,
``depth-node run --ros-args ...`` does the same.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler, SetEnvironmentVariable
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

# (name, default, description). Plain literals, so a test can read them without launch installed.
ARGUMENTS = [
    ("namespace", "", "Namespace of the node; one per camera, e.g. front."),
    ("node_name", "depth_node", "Name of the node."),
    ("params_file", "", "Parameters YAML (empty: the package's config/depth.yaml)."),
    ("image", "image", "Input image topic (Image, or the base of image/compressed)."),
    ("camera_info", "camera_info", "Input camera_info topic."),
    ("reference_depth", "reference_depth", "Reference depth topic for scale.mode sparse (Image, 16UC1 mm or 32FC1 m)."),
    ("reference_points", "reference_points", "Reference cloud for scale.mode sparse with scale.reference points (PointCloud2, e.g. a LiDAR)."),
    ("fastdds_profile", "", "Fast DDS XML profile (empty: the package's config/fastdds_shm.xml; 'none': middleware defaults)."),
    ("use_sim_time", "false", "Follow /clock (bag replay)."),
    ("log_level", "info", "Logging level: debug, info, warn, error."),
    ("lifecycle", "false", "Run the managed (lifecycle) node: configure loads the model, activate starts publishing."),
    ("autostart", "true", "With lifecycle:=true: configure and activate at start; false leaves it to a lifecycle manager."),
    ("model_card", "", "Overrides the model_card parameter when not empty."),
    ("input_transport", "", "Overrides the input_transport parameter (raw | compressed) when not empty."),
    ("output_resolution", "", "Overrides the output_resolution parameter (input | model) when not empty."),
    ("depth_encoding", "", "Overrides the depth_encoding parameter (32FC1 | 16UC1) when not empty."),
]
# The arguments that are node parameters (the rest configure the process).
PARAMETER_ARGUMENTS = ["model_card", "input_transport", "output_resolution", "depth_encoding"]


def _node(context, *args, **kwargs):
    share = get_package_share_directory("depth_node")
    value = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    params_file = value["params_file"] or os.path.join(share, "config", "depth.yaml")
    overrides = {name: value[name] for name in PARAMETER_ARGUMENTS if value[name]}
    overrides["use_sim_time"] = value["use_sim_time"].lower() in ("true", "1", "yes")
    actions = []
    profile = value["fastdds_profile"]
    if profile != "none":
        actions.append(SetEnvironmentVariable(
            "FASTDDS_DEFAULT_PROFILES_FILE", profile or os.path.join(share, "config", "fastdds_shm.xml")))
    managed = value["lifecycle"].lower() in ("true", "1", "yes")
    node = (LifecycleNode if managed else Node)(
        package="depth_node",
        executable="depth_node",
        name=value["node_name"],
        namespace=value["namespace"],
        parameters=[params_file, overrides],
        remappings=[("image", value["image"]), ("image/compressed", value["image"] + "/compressed"),
                    ("camera_info", value["camera_info"]), ("reference_depth", value["reference_depth"]),
                    ("reference_points", value["reference_points"])],
        arguments=[*(["--lifecycle"] if managed else []), "--ros-args", "--log-level", value["log_level"]],
        output="screen",
        emulate_tty=True,
    )
    actions.append(node)
    if managed and value["autostart"].lower() in ("true", "1", "yes"):  # configure, and activate once inactive
        def transition(transition_id):
            return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

        actions.append(RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, goal_state="inactive", entities=[transition(Transition.TRANSITION_ACTIVATE)])))
        actions.append(transition(Transition.TRANSITION_CONFIGURE))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=_node)]
    )
