"""A tiny name -> factory registry with suggestions (timm-style), and lazy entries (plugin-style)."""
from __future__ import annotations

import importlib
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
        self._lazy: dict[str, str] = {}  # name -> "package.module:attribute", imported on first get()
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            self._help[name] = help or (getattr(obj, "__doc__", "") or "").strip().split("\n")[0]
            return obj

        return deco

    def register_lazy(self, name: str, target: str, help: str) -> None:
        """Register ``name`` by reference, like a plugin entry point: ``target`` is ``"package.module:attribute"``,
        imported (``importlib``) and cached on the first :meth:`get`. It lets a lower layer list an entry that a
        higher layer implements (``backbones.SOURCES["run"]`` lives in ``transferkit.runs``) without importing it.
        The name counts as registered (``in``, :meth:`names`, :meth:`help`) before it is imported."""
        if name in self:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"lazy {self.kind} '{name}': target {target!r} is not 'package.module:attribute'")
        self._lazy[name] = target
        self._help[name] = help

    def get(self, name: str) -> T:
        if name not in self:
            known = ", ".join(self.names())
            raise ConfigError(
                f"Unknown {self.kind} '{name}'.{suggest(name, self.names())} Registered: {known}.{self.hint}"
            )
        if name not in self._items:
            module, _, attr = self._lazy[name].partition(":")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._items[name] = obj  # type: ignore[assignment]
            del self._lazy[name]
        return self._items[name]

    def names(self) -> list[str]:
        return sorted([*self._items, *self._lazy])

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._lazy
