"""Training the embedded default model (depth-node train): network, data, losses, loop."""
