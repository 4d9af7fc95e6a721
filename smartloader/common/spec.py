"""Declarative specs of the YAML sections: each key's type, bounds, default and meaning, once.

A :class:`Field` describes one key, a :class:`Section` a mapping of keys, a :class:`Typed`
a mapping whose ``type`` key picks one of several sections (``resolution: {type: ...}``).
Every part keeps its spec next to its code; builders, ``smartloader validate``, the plan,
warnings and the docs table (:mod:`smartloader.tools.keys`) all read these specs, so a
default or a bound is written once.

Reading *collects* problems instead of stopping at the first: :meth:`Section.read` appends
one message per problem to a list, each starting with its key path
(``phases[1].beta: must be >= 0, got -1.0``; an unknown key also gets ``did you mean
'pool_factor'?``), and marks what it could not read :data:`INVALID`, so that checks relating
several keys can skip what is already reported. :meth:`Section.parse` raises one
:class:`~smartloader.errors.ConfigError` listing every problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from smartloader.common import readers as r
from smartloader.errors import ConfigError

__all__ = ["REQUIRED", "INVALID", "KINDS", "Field", "Section", "Typed", "Values", "valid",
           "raise_problems", "key_path"]


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: The default of a key that must be given.
REQUIRED = _Marker("REQUIRED")
#: What a read gives for a value it reported a problem about.
INVALID = _Marker("INVALID")

#: Each kind of key, and how the docs name its type.
KINDS = {"int": "int", "float": "number", "str": "string", "bool": "bool",
          "key": "key path", "list": "list", "section": "mapping", "any": "any"}

#: ``check(values, given, path, problems)``: a relation between keys of one section, run
#: after its keys are read; ``values`` has defaults filled in and INVALID for bad keys.
Check = Callable[[dict, Mapping[str, Any], str, list], None]


def key_path(value: Any, path: str) -> tuple:
    """A key path (``0``, ``"image"``, or a non-empty list of them) as a tuple."""
    parts = value if isinstance(value, list) else [value]
    if not parts:
        raise r.fail(path, "must not be an empty list")
    for i, part in enumerate(parts):
        if isinstance(part, bool) or not isinstance(part, (int, str)):
            raise r.fail(r.join(path, i) if isinstance(value, list) else path,
                         "must be an integer position or a string key", part)
    return tuple(parts)


@dataclass(frozen=True, eq=False)
class Field:
    """One key: its name, kind, default, bounds, choices and a one-line doc with units.

    ``kind`` is ``int``, ``float``, ``str``, ``bool``, ``key`` (a key path into a batch),
    ``list``, ``section`` (a nested :class:`Section` or :class:`Typed`; with ``list``, a list
    of them) or ``any`` with a custom ``parse(value, path)`` that raises ConfigError.
    ``only = (key, values)``: the key may be given only when the section's ``key`` is one
    of ``values`` (``only_message`` formats the error with ``path``, ``value``, ``values``).
    The ``*_doc`` strings override what :func:`describe` shows.
    """

    name: str
    kind: str = "any"
    default: Any = None
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    section: "Section | Typed | None" = None
    parse: Callable[[Any, str], Any] | None = None
    only: tuple[str, tuple[Any, ...]] | None = None
    only_message: str | None = None
    type_doc: str | None = None
    bounds_doc: str | None = None
    default_doc: str | None = None
    #: follows the section's message for this key when it is missing
    hint: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Field {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "section" and self.section is None:
            raise ValueError(f"Field {self.name!r}: kind section needs a section")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def read(self, value: Any, path: str, problems: list[str]) -> Any:
        """``value`` read at ``path``; INVALID after appending its problems."""
        if value is None and self.nullable:
            return None
        if self.section is not None:
            return self._read_sections(value, path, problems)
        try:
            return self.convert(value, path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return INVALID

    def _read_sections(self, value: Any, path: str, problems: list[str]) -> Any:
        if self.kind != "list":
            before = len(problems)
            out = self.section.read(value, path, problems)
            return INVALID if out is None or len(problems) > before else out
        try:
            items = r.as_list(value, path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return INVALID
        # Each item on its own: a relation over the list can still use the good ones.
        return tuple(INVALID if (got := self.section.read(item, r.join(path, i), problems))
                     is None else got for i, item in enumerate(items))

    def convert(self, value: Any, path: str) -> Any:
        """The value read at ``path``; raises ConfigError naming it."""
        if self.parse is not None:
            return self.parse(value, path)
        if self.kind == "int":
            return r.as_int(value, path, minimum=self.minimum, maximum=self.maximum)
        if self.kind == "float":
            return r.as_float(value, path, minimum=self.minimum, maximum=self.maximum,
                              min_exclusive=self.min_exclusive,
                              max_exclusive=self.max_exclusive)
        if self.kind == "str":
            return r.as_str(value, path, choices=self.choices)
        if self.kind == "bool":
            return r.as_bool(value, path)
        if self.kind == "key":
            return key_path(value, path)
        if self.kind == "list":
            return tuple(r.as_list(value, path))
        return value


@dataclass(frozen=True, eq=False)
class Section:
    """A mapping of keys (``fields``, in the order the docs list them) and the relations
    between them (``checks``). ``required_message`` follows the path of a missing key."""

    name: str
    fields: tuple[Field, ...]
    doc: str = ""
    checks: tuple[Check, ...] = ()
    required_message: str = "required"

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"Section {self.name!r}: duplicate keys in {names}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name}: no key {name!r}")

    def default(self, name: str) -> Any:
        """The default of key ``name`` (the one place it is written)."""
        return self.field(name).default

    def read(self, raw: Any, path: str, problems: list[str], *,
             implicit: Mapping[str, Any] | None = None) -> dict | None:
        """Read ``raw`` against the section, appending every problem to ``problems``.

        Returns the values with defaults filled in and INVALID for each bad key, or None
        when ``raw`` is not a mapping. Problems come in the order of the keys in ``raw``
        (top to bottom of the file), then missing keys, then the section's checks.
        ``implicit`` keys (a Typed section's ``type``) are allowed and already read.
        """
        try:
            m = r.require_mapping(raw, path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None
        implicit = dict(implicit or {})
        allowed = (*implicit, *self.keys)
        by_name = {f.name: f for f in self.fields}
        out: dict[str, Any] = dict(implicit)
        found: dict[str, list[str]] = {}
        for key, value in m.items():
            if key in implicit:
                continue
            sub = found[key] = []
            f = by_name.get(key)
            if f is None:
                sub.append(r.unknown_key(path, key, allowed))
            else:
                out[key] = f.read(value, r.join(path, key), sub)
        for f in self.fields:  # a key that does not apply: that is the one problem with it
            if f.only is not None and f.name in m and not self._applies(f, out):
                found[f.name] = [self._only_message(f, path, out)]
                out[f.name] = INVALID
        for sub in found.values():
            problems.extend(sub)
        for f in self.fields:
            if f.name in m:
                continue
            if f.required and self._applies(f, out):
                problems.append(f"{r.join(path, f.name)}: {self.required_message}"
                                + (f" {f.hint}" if f.hint else ""))
                out[f.name] = INVALID
            else:
                out[f.name] = None if f.required else f.default
        for check in self.checks:
            check(out, m, path, problems)
        return out

    def _applies(self, f: Field, out: Mapping[str, Any]) -> bool:
        if f.only is None:
            return True
        key, values = f.only
        value = out.get(key, self.default(key) if key in self.keys else None)
        return value is INVALID or value in values

    def _only_message(self, f: Field, path: str, out: Mapping[str, Any]) -> str:
        key, values = f.only
        value = out.get(key, self.default(key) if key in self.keys else None)
        template = f.only_message or "{path}: only valid with {key}: {values}"
        return template.format(path=r.join(path, f.name), key=key, value=value,
                               values=" or ".join(map(str, values)))

    def parse(self, raw: Any, path: str) -> "Values":
        """The section read from ``raw``; raises one ConfigError listing every problem."""
        problems: list[str] = []
        out = self.read(raw, path, problems)
        raise_problems(problems)
        return Values(out)


@dataclass(frozen=True, eq=False)
class Typed:
    """A mapping whose ``type`` key picks one of ``variants`` (each a :class:`Section` of
    the other keys). ``shorthand(raw, path)`` may turn a bare value into a mapping first
    (``resolution: 160`` is ``{type: constant, value: 160}``); it may raise ConfigError."""

    name: str
    variants: tuple[tuple[str, Section], ...]
    doc: str = ""
    type_doc: str = ""
    required_message: str = "required (one of {choices})"
    shorthand: Callable[[Any, str], Any] | None = None

    @property
    def types(self) -> dict[str, Section]:
        return dict(self.variants)

    def read(self, raw: Any, path: str, problems: list[str]) -> dict | None:
        try:
            if self.shorthand is not None:
                raw = self.shorthand(raw, path)
            m = r.require_mapping(raw, path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None
        types = self.types
        tpath = r.join(path, "type")
        if "type" not in m:
            problems.append(f"{tpath}: "
                            f"{self.required_message.format(choices=', '.join(types))}")
            return None
        try:
            kind = r.as_str(m["type"], tpath, choices=tuple(types))
        except ConfigError as exc:  # the other keys depend on the type: nothing more to say
            problems.extend(exc.problems)
            return None
        return types[kind].read(m, path, problems, implicit={"type": kind})

    parse = Section.parse


class Values(Mapping):
    """A parsed section: a read-only mapping with attribute access (``v.beta``), nested
    sections as Values and lists as tuples. Equal to any mapping with the same items."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_items", {k: _freeze(v) for k, v in (items or {}).items()})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Values are read-only")

    def __reduce__(self):
        return Values, (self._items,)

    def __repr__(self) -> str:
        return f"Values({self._items!r})"


def _freeze(value: Any) -> Any:
    if isinstance(value, Values):
        return value
    if isinstance(value, Mapping):
        return Values(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def valid(values: Mapping[str, Any] | None, *names: str) -> bool:
    """Whether ``values`` was read and its keys ``names`` are not INVALID."""
    return values is not None and values is not INVALID and all(
        values.get(n, INVALID) is not INVALID for n in names)


def raise_problems(problems: Sequence[str]) -> None:
    """Raise one ConfigError listing ``problems`` (one per line); nothing when empty."""
    if problems:
        raise ConfigError.of(problems)
