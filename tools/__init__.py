"""Command-line tools of the book that are not part of bn_lib (run as ``python -m tools.NAME``)."""
