"""``--set KEY=VALUE``: the one way every training command (``train lam``, ``train student``,
``train planner``) overrides a field of its model's configuration dataclass."""

from __future__ import annotations

import argparse
import dataclasses


def add_config_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """A repeatable ``--set KEY=VALUE`` option (``args.set``: the list given, empty by default)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def config_with(defaults, assignments: list[str]):
    """The dataclass ``defaults`` with ``--set KEY=VALUE`` overrides of its scalar fields."""
    fields = {field.name: getattr(defaults, field.name) for field in dataclasses.fields(defaults)}
    changes = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or key not in fields or isinstance(fields[key], tuple):
            scalars = ", ".join(name for name, value in fields.items() if not isinstance(value, tuple))
            raise ValueError(f"--set takes KEY=VALUE with KEY one of {scalars}; got '{assignment}'")
        kind = type(fields[key])
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"--set {key}: expected true or false, got '{text}'")
            changes[key] = text.lower() == "true"
        else:
            try:
                changes[key] = kind(text)
            except ValueError:
                raise ValueError(f"--set {key}: expected a {kind.__name__}, got '{text}'") from None
    return dataclasses.replace(defaults, **changes)  # the config checks its own values
