"""Evaluation: metrics, the simulated-click protocol, folder runs, reports, plots and the demo."""
