"""Model families behind one interface (:class:`DepthEstimator`), loaded from model cards."""

from depth_node.core.estimator import DepthEstimator, OutputSpec, Prediction
from depth_node.estimators.card import ModelCard, load_card
from depth_node.estimators.registry import FAMILIES, load_estimator

__all__ = ["DepthEstimator", "FAMILIES", "ModelCard", "OutputSpec", "Prediction", "load_card", "load_estimator"]
