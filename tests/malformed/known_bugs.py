"""Corpus files that still show a bug in a module the malformed tests do not own; their
tests are strict xfails, so that the fix turns them into failures until the entry goes."""

KNOWN_BUGS = {
}
