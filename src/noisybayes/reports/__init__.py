"""Figures of posteriors, predictions and calibration (matplotlib: the ``cli`` extra).
Imported on use, so importing ``noisybayes`` loads no plotting library."""
