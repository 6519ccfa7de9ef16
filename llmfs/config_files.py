"""Settings files: a config dataclass's values as TOML or YAML, for `python -m llmfs train --config run.toml` and
the pages' "Save these settings" / "Load settings".

A file's keys are the config's field names (`seq_len`, `batch_size`, ...), at the top or under one table named
after the command that reads it (`[train]`, `[eval]`, `[data]`, `[generate]`). Every refusal is a
`ConfigFileError` naming the file, the line and the fix: an unknown key (with the closest field name), a value of
the wrong type, a value the config itself refuses (its own message, at the line of the key it names), or a TOML /
YAML syntax error. tomllib gives no line numbers for keys, so a key's line is found by scanning the text, which
is valid TOML by then.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import tomllib

from .config import check_fields, field_info
from .errors import ConfigError

# config class -> the tables a settings file may hold its keys under (the commands that read it)
COMMAND_TABLES = {"TrainConfig": ("train", "compare-precision"), "EvalConfig": ("eval",),
                  "PipelineConfig": ("data", "pipeline"), "SampleConfig": ("generate",)}
MAX_BYTES = 1024 * 1024   # a settings file is a few lines; anything this big is something else


class ConfigFileError(ConfigError):
    """A settings file refused: `.source` (the file), `.line` (1-based, None for the file as a whole), `.field`
    (the key concerned, None for a syntax error), `.detail` (the message without the file and line)."""

    def __init__(self, source: str, line: int | None, detail: str, field: str | None = None):
        where = f"{source}, line {line}" if line else source
        super().__init__(field, f"{where}: {detail}")
        self.source, self.line, self.detail = source, line, detail


class Settings(dict):
    """What a settings file sets ({field: value}), with `.source` (the file) and `.lines` ({field: its line}), so a
    value refused later (with the command line's flags, `complete=False`) can still be named by its line."""

    def __init__(self, values: dict, source: str, lines: dict[str, int | None]):
        super().__init__(values)
        self.source, self.lines = source, lines

    def refused(self, e: ConfigError) -> "ConfigFileError":
        """`e` (the config refusing a value this file set) as the file's error, at that key's line."""
        return ConfigFileError(self.source, self.lines.get(e.field or ""), str(e), field=e.field)


# -- reading ------------------------------------------------------------------------------------------------------
def read_settings(path: str | Path, cls: type, *, complete: bool = True) -> Settings:
    """`parse_settings` of a file (its format from the suffix); a missing or unreadable file is a ConfigFileError."""
    source = str(path)
    file = Path(path).expanduser()
    try:
        if file.stat().st_size > MAX_BYTES:
            raise ConfigFileError(source, None, f"is {file.stat().st_size:,} bytes, too big for a settings file "
                                                "(a few key = value lines): is it the right file?")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(source, None, "no such file: check the path (a run's \"Download these settings\" "
                                            "or a page's \"Save these settings\" saves one)") from None
    except IsADirectoryError:
        raise ConfigFileError(source, None, "is a folder, not a settings file: give the .toml or .yaml file") from None
    except UnicodeDecodeError:
        raise ConfigFileError(source, None, "is not a text file (UTF-8): give a .toml or .yaml file") from None
    except OSError as e:
        raise ConfigFileError(source, None, f"cannot be read ({e.strerror or e})") from None
    return parse_settings(text, cls, source=source, complete=complete)


def parse_settings(text: str, cls: type, *, source: str = "the settings file", fmt: str | None = None,
                   complete: bool = True) -> Settings:
    """{field: value} for the keys the settings `text` sets, checked against the config dataclass `cls`: types
    coerced the way the dataclass takes them (int where a float goes, list -> tuple), and `cls(**values)`
    constructed, so a value the config refuses is refused here, at its key's line.

    Args:
        source: the file's name, for messages (and the format, when `fmt` is None: .yaml / .yml -> YAML, else TOML).
        fmt: "toml" or "yaml".
        complete: the file alone must make a valid config (a page loading it, a preset). False: each value is
            checked on its own (type, choices, range) and the rules between fields are left to the config made
            with the command line's flags too (`train --config f.toml --lora-rank 8` with `quantize = "4bit"` in
            the file); `Settings.refused` then names the line.
    Raises:
        ConfigFileError: naming the file, the line and the fix.
    """
    fmt = (fmt or _format_of(source)).lower()
    if fmt not in ("toml", "yaml", "yml"):
        raise ValueError(f"fmt must be toml or yaml (got {fmt!r})")
    yaml = fmt != "toml"
    data, lines = _load_yaml(text, source) if yaml else _load_toml(text, source)
    keys = _flatten_command_table(data, cls, source, lines, yaml)
    infos, hints = field_info(cls), get_type_hints(cls)
    values = {}
    for key, (value, path) in keys.items():
        try:
            values[key] = _coerce(hints[key], value, yaml=yaml and path in lines.plain)
        except _WrongType as e:
            raise ConfigFileError(source, lines.get(path), _wrong_type(key, e.kind, hints[key], infos[key], value,
                                                                       yaml), field=key) from None
    settings = Settings(values, source, {key: lines.get(path) for key, (_, path) in keys.items()})
    try:
        if complete:
            cls(**values)
        else:
            check_fields(_with_defaults(cls, values))
    except ConfigError as e:
        raise settings.refused(e) from e
    except (TypeError, ValueError) as e:
        raise ConfigFileError(source, None, str(e)) from e
    return settings


def _with_defaults(cls: type, values: dict) -> Any:
    """An instance of the config `cls` holding `values` over its defaults, made without `__post_init__` (whose
    rules between fields wait for the command line's flags), for `check_fields` to check each value alone."""
    obj = object.__new__(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        object.__setattr__(obj, f.name, values.get(f.name, default))
    return obj


def _format_of(source: str) -> str:
    return "yaml" if str(source).lower().endswith((".yaml", ".yml")) else "toml"


class _Lines(dict):
    """key path (a tuple of keys from the top) -> the 1-based line it is set on; `.plain`: the paths of YAML's
    unquoted scalars (PyYAML reads `1e-4` as text: a plain one is taken as the number it was meant to be)."""

    def __init__(self):
        super().__init__()
        self.plain: set[tuple] = set()

    def get(self, path, default=None):
        return super().get(path, default) if path is not None else default


def _load_toml(text: str, source: str) -> tuple[dict, _Lines]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else None
        what = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
        raise ConfigFileError(source, line, f"not valid TOML ({what}). Each line is key = value: text in quotes "
                                            "(model = \"llmfs-tiny\"), numbers and true / false without, lists in "
                                            "[ ] (filters = [\"c4\"]).") from None
    return data, _toml_lines(text)


_TOML_KEY = r"""(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)"""
_TOML_HEADER = re.compile(rf"^\s*\[\[?\s*({_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*)\s*\]\]?")
_TOML_ASSIGN = re.compile(rf"^\s*({_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*)\s*=")


def _toml_key_parts(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_TOML_KEY, dotted)
    return tuple(json.loads(p) if p.startswith('"') else p.strip("'") for p in parts)


def _toml_lines(text: str) -> _Lines:
    """Where each key path is first set: `key = ...` lines under the table header in force, and `[table]` headers
    (a sub-table such as [train.thresholds] sets its prefixes too). Lines inside multi-line strings are skipped."""
    lines, table, in_string = _Lines(), (), None
    for n, line in enumerate(text.splitlines(), start=1):
        if in_string:
            if line.count(in_string) % 2:
                in_string = None
            continue
        header = _TOML_HEADER.match(line)
        assign = None if header else _TOML_ASSIGN.match(line)
        if header:
            table = _toml_key_parts(header.group(1))
            path = table
        elif assign:
            path = table + _toml_key_parts(assign.group(1))
        else:
            continue
        for i in range(1, len(path) + 1):
            lines.setdefault(path[:i], n)
        rest = line[(header or assign).end():]
        for quote in ('"""', "'''"):
            if rest.count(quote) % 2:
                in_string = quote
    return lines


def _load_yaml(text: str, source: str) -> tuple[dict, _Lines]:
    import yaml
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = e.problem or e.context or "not YAML"
        raise ConfigFileError(source, mark.line + 1 if mark else None,
                              f"not valid YAML ({what}). Each line is key: value, indented with spaces (not tabs), "
                              "lists in [ ] (filters: [c4, length]).") from None
    except yaml.YAMLError as e:
        raise ConfigFileError(source, None, f"not valid YAML ({e})") from None
    lines = _Lines()
    if data is None:
        return {}, lines
    if not isinstance(data, dict):
        raise ConfigFileError(source, 1, "should hold settings as key: value lines (e.g. steps: 100), not a "
                                         f"{'list' if isinstance(data, list) else 'single value'}.")
    _yaml_lines(node, (), lines, source)
    return data, lines


def _yaml_lines(node, prefix: tuple, lines: _Lines, source: str) -> None:
    import yaml
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigFileError(source, line, f"{key} is set twice (lines {seen[key]} and {line}): keep one.",
                                  field=str(key))
        seen[key] = line
        path = prefix + (key,)
        lines.setdefault(path, line)
        if isinstance(value_node, yaml.ScalarNode) and value_node.style is None:
            lines.plain.add(path)
        if isinstance(value_node, yaml.MappingNode) and len(prefix) < 1:
            _yaml_lines(value_node, path, lines, source)


def _flatten_command_table(data: dict, cls: type, source: str, lines: _Lines, yaml: bool
                           ) -> dict[str, tuple[Any, tuple]]:
    """{field: (value, its key path)}: the keys at the top and those under the command's own table, merged; a
    key set in both, a table of another command's and an unknown key refused."""
    fields = field_info(cls)
    tables = COMMAND_TABLES.get(cls.__name__, (cls.__name__.lower().removesuffix("config"),))
    commands = {t: c for c, ts in COMMAND_TABLES.items() for t in ts}
    keys: dict[str, tuple[Any, tuple]] = {}

    def take(key: str, value: Any, path: tuple) -> None:
        if key not in fields:
            raise ConfigFileError(source, lines.get(path), _unknown(key, fields), field=None)
        if key in keys:
            first, again = lines.get(keys[key][1]), lines.get(path)
            raise ConfigFileError(source, again, f"{key} is set twice (lines {first} and {again}): keep one.",
                                  field=key)
        keys[key] = (value, path)

    for key, value in data.items():
        key = str(key)
        if key in tables and key not in fields and isinstance(value, dict):
            for inner, inner_value in value.items():
                take(str(inner), inner_value, (key, inner))
        elif key in commands and key not in fields:
            header = f"[{key}]" if not yaml else f"{key}:"
            raise ConfigFileError(source, lines.get((key,)), f"{header} holds the settings of "
                                  f"`python -m llmfs {command_for(commands[key])}`, but this file is read for "
                                  f"{command_for(cls.__name__)}: put the keys at the top of the file"
                                  + (f" or under {_table(tables[0], yaml)}." if tables else "."), field=None)
        else:
            take(key, value, (key,))
    return keys


def command_for(cls_name: str) -> str:
    """The `python -m llmfs` command that reads settings of the config class `cls_name` (`TrainConfig` -> train)."""
    return COMMAND_TABLES.get(cls_name, (cls_name,))[0]


def _table(name: str, yaml: bool) -> str:
    return f"{name}:" if yaml else f"[{name}]"


def _unknown(key: str, fields: dict) -> str:
    wanted = key.strip().lower().replace("-", "_").replace(" ", "_")
    match = wanted if wanted in fields else next(iter(difflib.get_close_matches(wanted, list(fields), n=1,
                                                                                  cutoff=0.6)), None)
    if match:
        return (f"unknown setting \"{key}\"; did you mean \"{match}\"? Rename it (keys are the settings' names, "
                "with _ between words, as in seq_len).")
    return f"unknown setting \"{key}\": remove it, or use one of the settings: {', '.join(fields)}."


# -- types ----------------------------------------------------------------------------------------------------------
class _WrongType(Exception):
    def __init__(self, kind: str):
        self.kind = kind   # what the field takes: "int", "float", "bool", "str", "list", "table"


def _coerce(t: Any, value: Any, *, yaml: bool = False) -> Any:
    """`value` as the field of type `t` takes it; _WrongType when it is not that kind of value. Literal choices
    and ranges are left to the dataclass (its message names them)."""
    origin, args = get_origin(t), get_args(t)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, yaml=yaml)
    if origin is Literal:
        return value
    if t is bool:
        if isinstance(value, bool):
            return value
        raise _WrongType("bool")
    if t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise _WrongType("int")
    if t is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if yaml and isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-4 as text: the number was meant
            try:
                return float(value)
            except ValueError:
                pass
        raise _WrongType("float")
    if t is str:
        if isinstance(value, str):
            return value
        raise _WrongType("str")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _WrongType("list")
        inner = args[0] if args else Any
        try:
            return tuple(v if inner is Any else _coerce(inner, v) for v in value)
        except _WrongType:
            raise _WrongType("list_of_" + ("numbers" if inner is float else "text")) from None
    if t is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise _WrongType("table")
    return value


_TAKES = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
          "list": "a list", "table": "a table", "list_of_numbers": "a list of numbers",
          "list_of_text": "a list of texts in quotes"}


def _wrong_type(key: str, kind: str, t: Any, info: dict, value: Any, yaml: bool) -> str:
    example = _example(key, t, info, yaml)
    hint = ""
    if isinstance(value, str) and kind in ("int", "float"):
        hint = " Write the number without quotes."
    elif isinstance(value, str) and kind == "bool":
        hint = " Write true or false without quotes."
    elif kind == "str" and not isinstance(value, (list, dict)):
        hint = " Put the text in quotes."
    elif kind == "list" and isinstance(value, str):
        hint = " Put each item in quotes inside [ ], separated by commas."
    return f"{key} takes {_TAKES[kind]}, e.g. {example}, not {_describe(value)}.{hint}"


def _example(key: str, t: Any, info: dict, yaml: bool) -> str:
    """`key = <a value of its type>` (`key: ...` in YAML): the field's default when it shows the form, else a
    made-up one."""
    default = info.get("default")
    usable = default is not None and default != () and default != ""
    value = default if usable else _sample(t)
    return f"{key}: {json.dumps(_plain(value))}" if yaml else f"{key} = {_toml_value(value)}"


def _sample(t: Any) -> Any:
    origin, args = get_origin(t), get_args(t)
    if origin in (Union, types.UnionType):
        return _sample(next(a for a in args if a is not type(None)))
    if origin is Literal:
        return args[0]
    if origin is tuple:
        return [0.7, 0.3] if args and args[0] is float else ["a", "b"]
    if t is dict or origin is dict:
        return {"length": {"min_words": 20}}
    return {bool: True, int: 1, float: 0.5}.get(t, "text")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"the text {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, (list, tuple, dict)):
        text = json.dumps(_plain(value), default=str)
        return text if len(text) <= 60 else ("a list" if isinstance(value, (list, tuple)) else "a table")
    if value is None:
        return "an empty value"
    return f"a {type(value).__name__}"


# -- writing --------------------------------------------------------------------------------------------------------
def dump_settings(cls: type, config_or_values: Any, *, fmt: str = "toml", header: str = "") -> str:
    """A settings file (TOML or YAML) holding every field of `cls` that has a value (None is left out: TOML has
    no null, and the field's default is None), in the dataclass's order, `header` as leading `# ` comment lines.
    `config_or_values`: an instance of `cls`, or a dict such as a run's config.json "config" (keys `cls` does not
    have are left out; fields it lacks take their defaults). `parse_settings` of the result gives the values back.
    """
    infos = field_info(cls)
    if dataclasses.is_dataclass(config_or_values) and not isinstance(config_or_values, type):
        values = {name: getattr(config_or_values, name) for name in infos}
    else:
        given = dict(config_or_values or {})
        values = {name: given.get(name, info["default"]) for name, info in infos.items()}
    values = {k: v for k, v in values.items() if v is not None}
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    if comments:
        comments += "\n"
    if fmt.lower() in ("yaml", "yml"):
        import yaml
        if not values:
            return comments
        return comments + yaml.safe_dump(_plain(values), sort_keys=False, allow_unicode=True,
                                         default_flow_style=False)
    if fmt.lower() != "toml":
        raise ValueError(f"fmt must be toml or yaml (got {fmt!r})")
    return comments + "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in values.items())


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (JSON and safe YAML know lists only)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_key(key: Any) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped (anything else as it is, UTF-8)."""
    out = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)   # the shortest text that reads back as the same float ("0.001", "1e-05")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} in a settings file")
