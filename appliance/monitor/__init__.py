"""Prediction windows, drift, live accuracy, alert rules and the monitor pass."""
