"""``python -m noisybayes``: the ``noisybayes`` command."""

from noisybayes.cli.main import main

raise SystemExit(main())
