"""depth_node: accelerated monocular depth for ROS 2.

The numeric core (``depth_node.core``) and the estimators (``depth_node.estimators``) import no ROS;
``depth_node.ros`` is the thin rclpy shell and ``depth_node.tools`` the command line.
"""

__version__ = "0.1.0"
