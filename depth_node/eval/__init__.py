"""Evaluation on recorded data: read bags, run the node's pipeline, score against ground truth, report."""
