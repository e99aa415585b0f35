"""Registry: names, suggestions, and lazy (plugin-style) entries such as the backbone source ``run``."""
from __future__ import annotations

import pytest

from transferkit.errors import ConfigError
from transferkit.registry import Registry


def test_lazy_entry_is_listed_before_import_and_resolved_on_first_get():
    r: Registry = Registry("widget")
    r.register("plain", "a plain entry")(len)
    r.register_lazy("joiner", "os.path:join", "joins paths")
    assert "joiner" in r and r.names() == ["joiner", "plain"] and r.help("joiner") == "joins paths"
    import os.path

    assert r.get("joiner") is os.path.join and r.get("joiner") is os.path.join  # cached after the first get
    with pytest.raises(ValueError, match="already registered"):
        r.register_lazy("plain", "os:sep", "")
    with pytest.raises(ValueError, match="already registered"):
        r.register("joiner")(len)
    with pytest.raises(ValueError, match="package.module:attribute"):
        r.register_lazy("bad", "os.path.join", "")
    with pytest.raises(ConfigError, match="Unknown widget 'joner'. Did you mean 'joiner'"):
        r.get("joner")


def test_the_run_backbone_source_is_registered_lazily():
    from transferkit.backbones import SOURCES, parse_spec

    assert "run" in SOURCES.names() and "earlier transferkit run" in SOURCES.help("run")
    assert parse_spec("run:runs/x") == ("run", "runs/x")
    from transferkit.runs.run_source import create_from_run

    assert SOURCES.get("run") is create_from_run
