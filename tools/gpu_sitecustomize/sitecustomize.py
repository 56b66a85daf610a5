"""Make this Python look like the GPU machine's, which has only torch, triton, numpy, pytest,
pytest-xdist, hypothesis, scikit-learn and matplotlib (with what they require).

Put this folder first on PYTHONPATH and every Python started then imports this module
(``site`` does): every other installed distribution is hidden. Importing one of its
modules raises ModuleNotFoundError, and ``importlib.metadata`` no longer lists it, so
pytest loads none of its plugins (nbval's, for example). Modules found in the folders on
PYTHONPATH (this repository's packages) stay importable.

``tests/test_gpu_session.py`` runs ``DEVICE=cpu bash tools/gpu_session.sh`` under it, so
that the GPU script cannot come to need a package the GPU machine lacks. Working out what
to hide reads every installed distribution's metadata: about 0.3 s per Python started.
"""

import importlib.abc
import importlib.metadata
import os
import re
import sys

GPU_MACHINE_PACKAGES = ("torch", "triton", "numpy", "pytest", "pytest-xdist", "hypothesis",
                        "scikit-learn", "matplotlib")


def normal_name(name):
    """A distribution's name as pip compares them: "Scikit_Learn" is "scikit-learn"."""
    return re.sub(r"[-_.]+", "-", name).lower()


def hidden_names():
    """(distributions, top-level modules) installed here but not on the GPU machine."""
    installed = {normal_name(d.metadata["Name"] or ""): d
                 for d in importlib.metadata.distributions()}
    kept, wanted = set(), [normal_name(name) for name in GPU_MACHINE_PACKAGES]
    while wanted:  # the GPU packages and everything they require, extras aside
        name = wanted.pop()
        if name in kept or name not in installed:
            continue
        kept.add(name)
        for requirement in installed[name].requires or []:
            if "extra ==" not in requirement.replace('"', "").replace("'", ""):
                wanted.append(normal_name(re.match(r"[A-Za-z0-9._-]+", requirement)[0]))
    hidden = set(installed) - kept
    on_path = set()
    for folder in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if folder and os.path.isdir(folder):
            on_path |= {entry.removesuffix(".py") for entry in os.listdir(folder)}
    modules = {module for module, dists in importlib.metadata.packages_distributions().items()
               if all(normal_name(d) in hidden for d in dists)} - on_path
    return sorted(hidden), sorted(modules)


class HideFromImport(importlib.abc.MetaPathFinder):
    """Refuses the hidden modules, as a Python without them would."""

    def __init__(self, modules):
        self.modules = frozenset(modules)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.modules:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (hidden by tools/gpu_sitecustomize: the GPU "
                "machine does not have it)", name=fullname)
        return None


def install():
    distributions, modules = hidden_names()
    hidden = frozenset(distributions)
    discover = importlib.metadata.Distribution.discover.__func__

    def discover_visible(cls, **kwargs):
        return (d for d in discover(cls, **kwargs)
                if normal_name(d.metadata["Name"] or "") not in hidden)

    importlib.metadata.Distribution.discover = classmethod(discover_visible)
    sys.meta_path.insert(0, HideFromImport(modules))


install()
