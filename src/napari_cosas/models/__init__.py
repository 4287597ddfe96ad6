"""Neural network modules: Rein adapters, backbones, heads, decoders."""
