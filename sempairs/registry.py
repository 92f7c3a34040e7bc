"""Named entries of one kind (methods, datasets, evaluations, grid axes), each defined in a module of its own.

A registry belongs to a package: the first time it is read it imports every module of that
package, and each module registers what it defines. Adding an entry is therefore one new file
in that package; code outside it (a plugin, a test) calls :meth:`Registry.register` itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, filled by the modules of ``package`` (imported on first read) and by explicit calls."""

    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._entries: dict[str, T] = {}
        self._found = False

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name already taken by another entry is an error."""
        if self._entries.get(name, entry) is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice: give the new one another name")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for code that registered a temporary entry, such as a test)."""
        self._entries.pop(name, None)

    def _entries_found(self) -> dict[str, T]:
        if not self._found:
            self._found = True
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")
        return self._entries

    def __getitem__(self, name: str) -> T:
        entries = self._entries_found()
        if name not in entries:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(entries))}")
        return entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries_found()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries_found()))

    def __len__(self) -> int:
        return len(self._entries_found())

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries_found().items())

    def values(self) -> list[T]:
        return list(self._entries_found().values())
