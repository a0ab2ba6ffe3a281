"""``python -m nnr.reduction TOOL MODEL -o OUT [options]``: the data-free reduction tools on
the command line, the same command as ``nnr reduce`` (:mod:`nnr.cli.reduce`; docs/cli.md):
fold-bn, local-scaling, sparsify, micro-prune, unify, decompose, prune-channels. Errors: one
line, exit status 1 (2 for usage errors).
"""
import sys

from nnr.cli.reduce import alias_main

if __name__ == "__main__":
    sys.exit(alias_main())
