"""A tiny name -> factory registry with suggestions (timm-style)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import ConfigError, suggest

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; a duplicate name raises; unknown names get a 'did you mean'."""

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            self._help[name] = help or (getattr(obj, "__doc__", "") or "").strip().split("\n")[0]
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            known = ", ".join(sorted(self._items))
            raise ConfigError(
                f"Unknown {self.kind} '{name}'.{suggest(name, self._items)} Registered: {known}.{self.hint}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: str) -> bool:
        return name in self._items
