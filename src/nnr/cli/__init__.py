"""The ``nnr`` command line: encode, decode, info and verify NNR bitstreams, and reduce
models with the data-free parameter-reduction tools.

The entry point is :func:`nnr.cli.main.main`; ``docs/cli.md`` is its reference.
"""
