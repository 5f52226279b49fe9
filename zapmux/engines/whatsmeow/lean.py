"""Loading neonize without the packages a worker never uses: ~12 MB less per worker.

neonize's modules import httpx, requests and linkpreview (with BeautifulSoup) when
they load, for link previews and downloads by URL. A zapmux worker asks for neither:
it hands media over as bytes and sends no link previews. :func:`defer` makes those
packages stand-ins until something really uses one — calls a function, builds an
instance, reads a constant — and then imports every deferred package for real, so
that the use (and all later ones) get the real thing. Exception classes named in an
``except`` clause while deferred stay stand-ins (nothing raises them until the real
package is loaded). Measured with ``scripts/measure_whatsmeow_workers.py``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

DEFERRED = ("linkpreview", "bs4", "httpx", "requests")


class _StandIn(types.ModuleType):
    """A deferred module: its names are stand-ins that load the real one when used."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _forward(self.__name__, name)


class _Forward(type):
    """The class of a stand-in name: using it imports the real package and forwards."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls._real(), name)

    def _real(cls) -> Any:
        return getattr(importlib.import_module(_load_real(cls._module)), cls._name)


def _forward(module: str, name: str) -> type:
    attrs = {"_module": module, "_name": name, "__module__": module}
    return _Forward(name, (Exception,), attrs)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of the deferred packages (and their modules) with stand-ins."""

    def __init__(self, packages: Sequence[str]) -> None:
        self.packages = frozenset(packages)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.partition(".")[0] not in self.packages:
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing runs: that is the point."""


_finder: _Finder | None = None


def defer(packages: Sequence[str] = DEFERRED) -> None:
    """Answer imports of ``packages`` with stand-ins until one of them is really used.

    Call before importing neonize; packages already imported stay as they are.
    """
    global _finder
    if _finder is None:
        _finder = _Finder([p for p in packages if p not in sys.modules])
        sys.meta_path.insert(0, _finder)


def _load_real(module: str) -> str:
    """Stop deferring and drop every stand-in, so that ``module`` imports for real."""
    global _finder
    if _finder is not None:
        sys.meta_path.remove(_finder)
        _finder = None
        for name, loaded in list(sys.modules.items()):
            if isinstance(loaded, _StandIn):
                del sys.modules[name]
    return module
