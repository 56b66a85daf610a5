"""Vendor a trimmed copy of MathJax 3 so that the book's math renders offline.

Sphinx loads MathJax from a CDN by default; a classroom without network, or a saved copy of
the book, then shows raw ``\\(...\\)`` TeX. This keeps the few files MathJax needs to typeset
TeX in CommonHTML, taken from the npm registry's ``mathjax`` package:

- ``tex-mml-chtml.js``, the combined component the pages load;
- ``output/chtml/fonts/woff-v2/``, the fonts the CommonHTML output asks for;
- ``input/tex/extensions/``, the TeX packages that macros autoload (without them a macro such
  as ``\\cancel`` fails with a load error);
- ``LICENSE`` (Apache-2.0).

Usage (the tarball comes from ``npm pack mathjax@3.2.2``)::

    npm pack mathjax@3.2.2
    python -m tools.vendor_mathjax mathjax-3.2.2.tgz

The copy lands in ``_vendor/mathjax/``, which ``_config.yml`` lists in ``html_static_path``
(not ``_static/``: Jupyter Book 1 injects every ``.js`` under the static paths into every page
once a ``_static/`` folder exists, and MathJax would then load twice).
"""

import argparse
import hashlib
import shutil
import sys
import tarfile
from pathlib import Path

VERSION = "3.2.2"
# sha256 of the tarball `npm pack mathjax@3.2.2` produces (its sha512 is in the registry).
TARBALL_SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
TARGET = Path(__file__).resolve().parent.parent / "_vendor" / "mathjax"

# Paths inside the tarball (under package/) to keep, mapped to their place in TARGET.
KEEP_FILES = {"es5/tex-mml-chtml.js": "tex-mml-chtml.js", "LICENSE": "LICENSE"}
KEEP_FOLDERS = {
    "es5/output/chtml/fonts/woff-v2/": "output/chtml/fonts/woff-v2/",
    "es5/input/tex/extensions/": "input/tex/extensions/",
}


def destination(member_name: str) -> str | None:
    """Where a tarball member goes inside TARGET, or None when it is not kept."""
    name = member_name.removeprefix("package/")
    if name in KEEP_FILES:
        return KEEP_FILES[name]
    for source, target in KEEP_FOLDERS.items():
        if name.startswith(source) and not name.endswith("/"):
            return target + name[len(source) :]
    return None


def vendor(tarball: Path, target: Path = TARGET) -> list[Path]:
    """Replace ``target`` with the kept files of ``tarball``; returns the files written."""
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != TARBALL_SHA256:
        raise ValueError(
            f"{tarball} has sha256 {digest}, not that of mathjax {VERSION} ({TARBALL_SHA256})"
        )
    if target.exists():
        shutil.rmtree(target)
    written = []
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            relative = destination(member.name)
            if relative is None or not member.isfile():
                continue
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.extractfile(member).read())
            written.append(path)
    missing = [name for name in KEEP_FILES.values() if not (target / name).is_file()]
    if missing:
        raise ValueError(f"{tarball} lacks {missing}: is it the mathjax package?")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarball", type=Path, help=f"the output of `npm pack mathjax@{VERSION}`")
    args = parser.parse_args(argv)
    files = vendor(args.tarball)
    size = sum(path.stat().st_size for path in files)
    print(f"wrote {len(files)} files ({size / 1e6:.1f} MB) to {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
