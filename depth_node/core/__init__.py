"""ROS-free numeric core: image → model input → prediction → metric depth → confidence → point cloud."""
