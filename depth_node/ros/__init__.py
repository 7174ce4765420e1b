"""The ROS 2 shell: the node, message conversion, camera_info sync, diagnostics, parameters."""
