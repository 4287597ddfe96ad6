"""Training: Rein segmenter training and decoder-only click training."""
