"""Neural networks and their weights: Rein adapters, backbones, heads, decoders; the registry of
named weights, reading weights files, torch devices. Imports nothing else of the package but
:mod:`napari_cosas.io.files` (atomic writes)."""
