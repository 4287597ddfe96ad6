"""Interaction: clicks, correctors, the interaction engine, one patch's state and the annotation session."""
