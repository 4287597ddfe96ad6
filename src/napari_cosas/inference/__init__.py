"""Inference: the click predictor and its embedding cache, click refinement, the focus refiner in use,
the model bundle."""
