"""The ``nnr`` command line: encode, decode, info and verify NNR bitstreams.

The entry point is :func:`nnr.cli.main.main`; ``docs/cli.md`` is its reference.
"""
