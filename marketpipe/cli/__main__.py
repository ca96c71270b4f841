"""``python -m marketpipe.cli``: the same as the ``marketpipe`` console script."""

from marketpipe.cli import main

main()
