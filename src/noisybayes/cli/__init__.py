"""The ``noisybayes`` command (``fit`` on a table, ``demo``), the demo and the seed's two
scripts. Modules are imported on use: the command needs the ``cli`` extra."""
