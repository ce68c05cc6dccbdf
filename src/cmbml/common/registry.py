"""Registries: the named implementations of one way the project grows.

A registry maps a name (the value a user writes in params.yaml, e.g. ``lensing_net.architecture:
original``) to one implementation. Adding an implementation is one decorated class or function; the
parameter check, the stages and the reports find it by name. Nothing here imports Keras or any other
heavy dependency, so parameter checks stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Parameters
    ----------
    key : str
        The parameter that selects an entry (``"lensing_net.architecture"``); it names the registry in
        error messages.
    """

    def __init__(self, key: str):
        self.key = key
        self._entries: dict[str, T] = {}

    def register(self, entry: T | None = None, *, name: str | None = None) -> T | Callable[[T], T]:
        """Add ``entry`` under ``name`` (default: its ``name`` attribute, else its ``__name__``).

        Usable as ``@REGISTRY.register`` or ``@REGISTRY.register(name="x")``. A name registered twice is
        refused: silently replacing an implementation would change results without a trace.
        """

        def add(obj: T) -> T:
            key = name or getattr(obj, "name", None) or obj.__name__
            if key in self._entries:
                raise ValueError(f"{self.key}: {key!r} is registered twice")
            self._entries[key] = obj
            return obj

        return add(entry) if entry is not None else add

    def unregister(self, name: str) -> None:
        """Remove an entry (tests register dummies and remove them again)."""
        del self._entries[name]

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{self.key} = {name!r}: allowed values are {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())
