"""``python -m nnr.cli``: the same as the ``nnr`` command."""
import sys

from nnr.cli.main import main

sys.exit(main())
