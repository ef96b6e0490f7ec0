"""Read a YAML config file into a Config, or stop with one line saying what is wrong.

The file is composed into YAML nodes (not loaded into plain data) so that
every error can name the line of the offending key. ``${VAR}`` and
``${VAR:-default}`` are substituted in string scalars before the values are
typed; unquoted, they may also stand inside a flow ``{...}`` or ``[...]``.
Each message has one of these forms, never a traceback, and never the value
of a key whose name contains password, secret or token:

    <file>: <key.path> (line N): expected <what>, got <what>
    <file>: line N: YAML syntax error: <problem>
    <file>: cannot read config: <reason>
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import Field, fields
from types import MappingProxyType
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from geoq.config import schema
from geoq.config.schema import (DEFAULT_REDIS_URL, DEFAULTS_PATH, Config, EnvText, Invalid, RedisConfig, RouteConfig,
                                ScheduleConfig)
from geoq.errors import ConfigError

__all__ = ["default_config", "load_config"]

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
# A reference PyYAML may safely see as a placeholder: one whose text means the same wherever it
# stands. So no quote or backslash (quoted scalars would unescape them), no control or line-break
# character (YAML refuses or counts those) and no " #" (a comment in plain text); any other
# ${...} is left for YAML to read as before. A backslash just before it would start an escape.
_SAME_ANYWHERE = r"[^}'\"\\\x00-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff ]| (?!#)"
_MASKABLE = re.compile(r"(?<!\\)\$\{[A-Za-z_][A-Za-z0-9_]*(?::-(?:" + _SAME_ANYWHERE + r")*)?\}")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")

Pairs = dict[str, tuple[ScalarNode, Node]]


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None, *,
                producer: bool = False) -> Config:
    """The Config in the YAML file at *path*; ${VAR} comes from *env* (default: os.environ, read now).

    With producer=True (a Client, the admin CLI), handler options are not needed: a ${VAR}
    in a route's options that is unset is left as written instead of being an error, so a
    web app can share the worker's file without holding the worker's SMTP password.
    Raises ConfigError with a one-line message for anything wrong with the file.
    """
    name = os.fspath(path)
    root = _compose(name, _read(name))
    reader = _Reader(name, os.environ if env is None else env, producer=producer)
    try:
        config = reader.build(Config, root, "", None, {"path": name})
    except RecursionError:  # an alias that contains itself
        raise ConfigError(f"{name}: line 1: YAML syntax error: recursive or too deeply nested structure") from None
    return schema.complete(config)


def default_config(url: str = DEFAULT_REDIS_URL) -> Config:
    """A Config with every default and the given Redis URL, as if read from an empty file."""
    try:
        checked = schema.redis_url(url)
    except Invalid as e:
        raise ConfigError(_message(DEFAULTS_PATH, "redis.url", None, e.expected, _show(url, "redis.url"))) from None
    return schema.complete(Config(redis=RedisConfig(url=checked)))


def _read(name: str) -> str:
    try:
        with open(name, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{name}: cannot read config: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: cannot read config: not UTF-8 text") from None


def _compose(name: str, text: str) -> Node | None:
    """The node tree of *text*, with each ${...} reference as written, even where YAML rejects ``${``."""
    mask = _Mask(text)
    root = _parse(name, mask.text, mask.restore)
    mask.restore_tree(root)
    return root


def _parse(name: str, text: str, restore: Callable[[str], str]) -> Node | None:
    try:
        node: Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        return node
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = e.problem or e.context or "unreadable YAML"
        if problem.startswith("but ") and e.context:  # "but found another document" needs its context
            problem = f"{e.context}, {problem}"
    except yaml.reader.ReaderError as e:
        line, problem = text.count("\n", 0, e.position) + 1, f"character #x{e.character:04x} is not allowed"
    except yaml.YAMLError as e:
        line, problem = 1, str(e)
    raise ConfigError(_one_line(f"{name}: line {line}: YAML syntax error: {restore(problem)}"))


class _Mask:
    """*text* with ${...} references replaced by placeholders for PyYAML, and the way back.

    PyYAML reads ``{user: ${USER}}`` as a nested flow mapping and fails, while
    the substitution must see the reference as written. A placeholder is a
    plain word anywhere in YAML (no line break, so every line number stays
    right) that YAML types as a string, as it does the reference. Its marker
    is drawn at random after the file is read, and redrawn if the text holds
    it, so nothing written in the file can pass for a placeholder.
    """

    def __init__(self, text: str) -> None:
        self.marker = _marker(text)
        self.references: list[str] = []
        self.text = _MASKABLE.sub(self.hide, text)
        self.placeholder = re.compile(re.escape(self.marker) + r"(\d+)_")

    def hide(self, reference: re.Match[str]) -> str:
        self.references.append(reference[0])
        return f"{self.marker}{len(self.references) - 1}_"

    def restore(self, text: str) -> str:
        """*text* with each placeholder back to the reference it stands for."""
        if self.marker not in text:
            return text
        return self.placeholder.sub(lambda m: self.references[int(m[1])], text)

    def restore_tree(self, root: Node | None) -> None:
        """Restore every scalar (keys too). Aliases make the tree a graph, maybe a cycle: each node once."""
        if not self.references:
            return
        seen: set[int] = set()
        todo = [root] if root is not None else []
        while todo:  # a loop, not recursion: a deep file must not raise RecursionError here
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, ScalarNode):
                node.value = self.restore(node.value)
            elif isinstance(node, SequenceNode):
                todo.extend(node.value)
            elif isinstance(node, MappingNode):
                todo.extend(item for pair in node.value for item in pair)


def _marker(text: str) -> str:
    # "g" occurs once in a marker (the rest is hex and "x"), so no marker can begin in the text
    # just before a placeholder and end inside it.
    while True:
        marker = f"geoq{secrets.token_hex(8)}x"
        if marker not in text:
            return marker


class _Reader:
    """Walks the schema's dataclasses and the YAML nodes side by side."""

    def __init__(self, name: str, env: Mapping[str, str], producer: bool = False) -> None:
        self.name = name
        self.env = env
        self.producer = producer
        self.unset_ok = False  # True while reading handler options for a producer
        self.route_queues: dict[str, str] = {}  # route name -> queue, once routes are read

    def fail(self, path: str, node: Node | None, expected: str, got: str) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else None
        raise ConfigError(_message(self.name, path, line, expected, got))

    def build(self, cls: type, node: Node | None, path: str, key: Node | None, extra: dict[str, Any]) -> Any:
        """An instance of the section ``cls`` from a mapping node (None or null: every default)."""
        allowed = [f.name for f in fields(cls) if "derived" not in f.metadata]
        pairs = self.pairs(node, path, key, allowed)
        values = dict(extra)
        for f in fields(cls):
            if "derived" in f.metadata:
                values.setdefault(f.name, schema.default_of(f))
            else:
                values[f.name] = self.field_value(f, pairs, _join(path, f.name), key)
        finish = schema.FINISH.get(cls)
        if finish is not None:
            self.finish(finish, values, pairs, path, key)
        return cls(**values)

    def field_value(self, f: Field[Any], pairs: Pairs, path: str, parent: Node | None) -> Any:
        knode, vnode = pairs.get(f.name, (None, None))
        if "section" in f.metadata:
            return self.build(f.metadata["section"], vnode, path, knode or parent, {})
        if "routes" in f.metadata:
            return self.routes(vnode, path, knode)
        if "schedules" in f.metadata:
            return self.schedules(vnode, path, knode)
        if knode is None or vnode is None:
            default = schema.default_of(f)
            if default is schema.REQUIRED:
                self.fail(path, parent, "a value: this key is required", "nothing")
            return default
        if self.producer and f.metadata["check"] is schema.options:
            self.unset_ok = True
            try:
                return self.check(f.metadata["check"], knode, vnode, path)
            finally:
                self.unset_ok = False
        return self.check(f.metadata["check"], knode, vnode, path)

    def check(self, check: schema.Check, knode: Node, vnode: Node, path: str) -> Any:
        value = self.value(vnode, path)
        try:
            return check(value)
        except Invalid as e:
            self.fail(path, knode, e.expected, e.got if e.got is not None else _show(value, path))

    def finish(self, finish: Any, values: dict[str, Any], pairs: Pairs, path: str, key: Node | None) -> None:
        try:
            finish(values)
        except Invalid as e:
            blamed = e.key or ""
            where = _join(path, blamed) if blamed else path
            knode = pairs[blamed][0] if blamed in pairs else key
            got = e.got if e.got is not None else _show(values.get(blamed), where)
            self.fail(where, knode, e.expected, got)

    def routes(self, node: Node | None, path: str, key: Node | None) -> Mapping[str, RouteConfig]:
        out: dict[str, RouteConfig] = {}
        for name, (knode, vnode) in self.pairs(node, path, key, None).items():
            if not name.strip() or name != name.strip():
                self.fail(_join(path, name), knode, "a job type name without surrounding spaces", repr(name))
            out[name] = self.build(RouteConfig, vnode, _join(path, name), knode, {"type": name})
        self.route_queues = {name: route.queue for name, route in out.items()}
        return MappingProxyType(out)

    def schedules(self, node: Node | None, path: str, key: Node | None) -> Mapping[str, ScheduleConfig]:
        """Each schedule, its type checked against the routes (read before it) and its queue
        defaulting to its route's."""
        out: dict[str, ScheduleConfig] = {}
        for name, (knode, vnode) in self.pairs(node, path, key, None).items():
            here = _join(path, name)
            if not schema.SCHEDULE_NAME.fullmatch(name):
                self.fail(here, knode, "a schedule name of 1-100 characters of A-Z a-z 0-9 _ . -", repr(name))
            schedule = self.build(ScheduleConfig, vnode, here, knode, {"name": name})
            if schedule.type not in self.route_queues:
                tnode = self.pairs(vnode, here, knode, None)["type"][0]
                self.fail(_join(here, "type"), tnode, "the type of a route under routes",
                          f"{schedule.type!r}, which no route names")
            queue = schedule.queue or self.route_queues[schedule.type]
            out[name] = dataclasses.replace(schedule, queue=queue)
        return MappingProxyType(out)

    def pairs(self, node: Node | None, path: str, key: Node | None, allowed: list[str] | None) -> Pairs:
        """The key -> (key node, value node) pairs of a mapping; unknown and repeated keys are errors."""
        if node is None or (isinstance(node, ScalarNode) and node.tag == _NULL):
            return {}
        if not isinstance(node, MappingNode):
            self.fail(path or "top level", key or node, "a mapping", _show(self.value(node, path), path))
        if node.tag != _MAP:
            self.fail(path or "top level", key or node, "a plain YAML mapping", f"the tag {node.tag}")
        out: Pairs = {}
        for knode, vnode in node.value:
            name = self.key_name(knode, path)
            here = _join(path, name)
            if allowed is not None and name not in allowed:
                self.fail(here, knode, "one of " + ", ".join(allowed), _unknown(name, allowed))
            if name in out:
                self.fail(here, knode, "each key once", "it again")
            out[name] = (knode, vnode)
        return out

    def key_name(self, knode: Node, path: str) -> str:
        if isinstance(knode, ScalarNode) and knode.tag == _STR:
            return str(knode.value)
        if knode.tag == _MERGE:  # merging would make "each key once" ambiguous
            self.fail(path or "top level", knode, "a string key", "<< (YAML merge keys are not supported)")
        self.fail(path or "top level", knode, "a string key", _show(self.value(knode, path), path))

    def value(self, node: Node, path: str) -> Any:
        """Plain Python data of a node, with ${VAR} substituted in its strings."""
        if isinstance(node, SequenceNode) and node.tag == _SEQ:
            return [self.value(item, path) for item in node.value]
        if isinstance(node, MappingNode):
            return {name: self.value(v, _join(path, name)) for name, (_, v) in self.pairs(node, path, None, None).items()}
        return self.scalar(node, path)

    def scalar(self, node: Node, path: str) -> Any:
        if not isinstance(node, ScalarNode):
            self.fail(path, node, "a plain YAML value", f"the tag {node.tag}")
        if node.tag != _STR:
            try:
                return SafeConstructor().construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError):  # ValueError: a value its tag cannot hold (!!int abc)
                self.fail(path, node, "a plain YAML value", f"the tag {node.tag}")
        text = self.substitute(str(node.value), path, node)
        if text is None:
            return str(node.value)
        if isinstance(node, ScalarNode) and node.style:  # quoted or block text stays a string, as YAML would have it
            return text
        result = EnvText(text)
        result.typed = _yaml_typed(text)
        return result

    def substitute(self, text: str, path: str, node: Node) -> str | None:
        """*text* with ${VAR} and ${VAR:-default} replaced, or None when it has none."""
        if "${" not in text:
            return None
        if "${" in _REFERENCE.sub("", text):
            self.fail(path, node, "${VAR} or ${VAR:-default}", _show(text, path))
        for ref in _REFERENCE.finditer(text):
            if ref["default"] is None and ref["name"] not in self.env and not self.unset_ok:
                variable = ref["name"]
                self.fail(path, node, f"{variable} set in the environment (or a default: ${{{variable}:-...}})",
                          f"{variable} unset")
        return _REFERENCE.sub(self.lookup, text)

    def lookup(self, ref: re.Match[str]) -> str:
        # As in the shell, ":-" also replaces a variable that is set but empty.
        if ref["name"] not in self.env and ref["default"] is None:
            return ref[0]  # only reached with unset_ok: left as written
        value = self.env.get(ref["name"], "")
        return value if value or ref["default"] is None else ref["default"]


def _yaml_typed(text: str) -> Any:
    tag = Resolver().resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]  # stubs lack it
    return SafeConstructor().construct_object(ScalarNode(tag, text), deep=True)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _unknown(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    return "an unknown key" + (f" (did you mean {close[0]}?)" if close else "")


def _show(value: Any, path: str) -> str:
    """A value as a message may show it: secrets hidden, URL passwords masked, one short line."""
    if schema.is_secret(path):
        return "<hidden>"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        shown = repr(_URL_PASSWORD.sub(r"\1***@", str(value)))
        return shown if len(shown) <= 80 else shown[:76] + "...'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _message(name: str, path: str, line: int | None, expected: str, got: str) -> str:
    where = f"{path} (line {line})" if line is not None else path
    return _one_line(f"{name}: {where}: expected {expected}, got {got}")


def _one_line(message: str) -> str:
    return " ".join(message.split())
