"""Python configs: ``get_config(arg) -> ConfigDict`` plus ``--config.key=value`` overrides.

A config is addressed as ``PATH.py[:ARG]`` (a file defining ``get_config``) or
``package.module[:ARG]``. ``ARG`` selects a variant (e.g. ``smoke``). Overrides use the dotted
path of an existing field; the new value is parsed as a Python literal and must have the type of
the field it replaces (ints may become floats). Unknown fields are an error, never a silent add.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import pathlib
from typing import Any, Sequence

import ml_collections

ConfigDict = ml_collections.ConfigDict


def load_config(spec: str) -> ConfigDict:
    """Loads ``PATH.py[:ARG]`` or ``module.name[:ARG]`` by calling its ``get_config(ARG)``."""
    target, _, arg = spec.partition(":")
    if target.endswith(".py"):
        path = pathlib.Path(target)
        if not path.is_file():
            raise FileNotFoundError(f"config file {target!r} not found (from spec {spec!r})")
        module_spec = importlib.util.spec_from_file_location(f"_hepjax_config_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"config {target!r} defines no get_config(arg) function")
    config = module.get_config(arg) if arg else module.get_config()
    if not isinstance(config, ConfigDict):
        raise TypeError(f"{target}:get_config returned {type(config).__name__}, expected ConfigDict")
    return config


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string such as --config.model.name=mlp


def apply_override(config: ConfigDict, dotted: str, text: str) -> None:
    """Sets ``config.<dotted> = literal(text)`` in place, checking that the field exists."""
    *parents, leaf = dotted.split(".")
    node = config
    for i, name in enumerate(parents):
        if not isinstance(node, ConfigDict) or name not in node:
            raise KeyError(f"--config.{dotted}: no field {'.'.join(parents[: i + 1])!r} in the config")
        node = node[name]
    if not isinstance(node, ConfigDict) or leaf not in node:
        fields = sorted(node.keys()) if isinstance(node, ConfigDict) else []
        raise KeyError(f"--config.{dotted}: no field {leaf!r}; fields here: {fields}")
    old = node[leaf]
    value = _parse_value(text)
    if old is not None and value is not None:
        if isinstance(old, bool) != isinstance(value, bool):
            raise TypeError(f"--config.{dotted}={text!r}: expected a bool like the default {old!r}")
        if isinstance(old, float) and isinstance(value, int):
            value = float(value)
        elif isinstance(old, (tuple, list)) and isinstance(value, (tuple, list)):
            value = type(old)(value)
        elif isinstance(old, str) and not isinstance(value, str):
            value = text
        elif not isinstance(value, type(old)):
            raise TypeError(
                f"--config.{dotted}={text!r}: got {type(value).__name__}, "
                f"expected {type(old).__name__} like the default {old!r}")
    with node.ignore_type():
        node[leaf] = value


def parse_overrides(config: ConfigDict, argv: Sequence[str]) -> ConfigDict:
    """Applies every ``--config.a.b=value`` (or ``--config.a.b value``) in ``argv``; returns config."""
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--config."):
            raise ValueError(f"unrecognised argument {arg!r}: expected --config.FIELD=VALUE")
        if "=" in arg:
            key, text = arg[len("--config."):].split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ValueError(f"{arg} needs a value")
            key, text = arg[len("--config."):], args[i + 1]
            i += 1
        apply_override(config, key, text)
        i += 1
    return config


def to_json(config: ConfigDict) -> str:
    """The resolved config as JSON (tuples become lists)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def from_json(text: str) -> ConfigDict:
    return ConfigDict(json.loads(text))
