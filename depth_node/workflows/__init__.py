"""End-to-end jobs that combine the layers below (the node process, synthetic scenes, evaluation): bench, demo."""
