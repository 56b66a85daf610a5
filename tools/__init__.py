"""Repository tools that are not part of any installed package; run them from the
repository root: the verification report (``python -m tools.verify``), the browser check
of the built book (``python -m tools.check_pages``), the chapters' set-up cell
(``python -m tools.setup_cell``) and the vendored MathJax (``python -m tools.vendor_mathjax``).
The course's grader lives in the package ``bn_course``."""
