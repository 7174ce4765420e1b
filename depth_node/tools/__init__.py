"""Tools beside the node (CLI verbs, synthetic scenes); they reuse the same core."""
