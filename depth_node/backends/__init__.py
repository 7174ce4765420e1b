"""Runtimes behind the estimators: torch (CPU/CUDA, fp32/fp16/bf16). ONNX Runtime and TFLite runners live with
their generic estimators in depth_node.estimators."""
