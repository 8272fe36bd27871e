"""Front ends: formulas, tables, plots, the demo and the ``noisybayes`` command.

Modules are imported on use (``noisybayes.frontends.plots`` needs matplotlib,
``noisybayes.frontends.formula`` formulaic: the ``cli`` extra), so importing the package
loads nothing optional.
"""
