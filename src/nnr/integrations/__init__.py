"""Integrations of nnr with other frameworks, each behind its own extra (``nnr[flower]``)."""
