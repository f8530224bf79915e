"""Reading the YAML configuration file strictly: one-line errors, no duplicate keys, bounded nesting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.errors import ConfigError

MAX_CONFIG_DEPTH = 32


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: the key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _depth(value: object) -> int:
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def read_yaml(path: Path) -> Any:
    """The parsed YAML of ``path``: UTF-8, no key given twice, at most ``MAX_CONFIG_DEPTH`` deep.

    Every failure is a one-line ``ConfigError`` naming the file and the cause.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} not found (set PATCHWARDEN_CONFIG)") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"configuration file {path} is a directory, not a file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not UTF-8 text (bad byte at offset {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"configuration file {path} cannot be read: {exc.strerror or type(exc).__name__}") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: nested more than {MAX_CONFIG_DEPTH} levels deep") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if _depth(data) > MAX_CONFIG_DEPTH:
        raise ConfigError(f"{path}: nested more than {MAX_CONFIG_DEPTH} levels deep")
    return data
