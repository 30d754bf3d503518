"""Every tool's options are one typed dataclass; its command line is built from it.

A tool declares ``@dataclass(frozen=True, kw_only=True) class XOptions`` whose fields are its
options: the annotation is the type, the default is the default (a field without one is required),
the docstring under a field is its ``--help`` text, and ``flag(...)`` adds what a type cannot say
(other names, a ranged number type, positional, repeatable). ``parse(XOptions, argv, ...)`` builds
the ``argparse`` parser, parses, and constructs the dataclass, so its ``__post_init__`` checks run
on every command line. ``parse_command`` does the same for a tool with sub-commands.

Chosen over tyro and jsonargparse (measured in ``bench/results/cli_startup.md``): both read field
docstrings too, but import 10-20x more code before ``--help`` answers, and render flags their own
way (``--quality.min-chars``, ``--flag/--no-flag``) where megacpt keeps Megatron-LM's names.

Shared here:
- ``ArgumentParser``: argparse's, with a bad command line reported as one ``error:`` line, and
  ``program``: the name its usage shows (``megacpt VERB``);
- ``--json-keys``: the JSON field(s) holding document text (Megatron-LM's name; tools that read one
  field take exactly one);
- ``--workers``: how many cores a tool may use (processes or threads, as its help says);
- numbers: ``ranged`` types (``COUNT``, ``NON_NEGATIVE``, ``POSITIVE``, ``SHARE``) refuse a value out
  of range at parse time, with argparse's one ``error:`` line;
- ``--overwrite``: replace an existing output. Without it an existing output is an error. With
  it the new output is still written aside and swapped in only when complete, so a failed run
  leaves the old output as it was; and it never replaces an input, a folder holding an input, or a
  folder that is not megacpt's own earlier output of the same kind (``megacpt.atomic.check_output``).
"""

from __future__ import annotations

import argparse
import ast
import functools
import itertools
import math
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin, get_type_hints

from megacpt.errors import UserError

PROGRAM = "megacpt"  # the installed command; its verbs' usage reads ``megacpt VERB``


def program(module_form: str) -> str:
    """The name a verb's usage shows: ``megacpt VERB`` when run through the ``megacpt`` command, else
    its module form (``python -m megacpt.train``)."""
    return sys.argv[0] if sys.argv[0].startswith(f"{PROGRAM} ") else module_form


class ArgumentParser(argparse.ArgumentParser):
    """``argparse``'s parser, but a bad command line is one ``error:`` line (status 2), like every
    other refusal of megacpt's tools, not a usage block; ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


Number = int | float


def ranged(kind: type[int] | type[float], low: Number | None = None, high: Number | None = None, *,
           above: bool = False) -> Callable[[str], Number]:  # fmt: skip
    """An argparse ``type`` for a ``kind`` number in ``[low, high]`` (``low`` itself excluded when
    ``above``), so that an option out of range is refused when parsed, before any work."""
    bounds = []
    if low is not None:
        bounds.append(f"{'above' if above else 'at least'} {low}")
    if high is not None:
        bounds.append(f"at most {high}")
    wanted = ("an integer" if kind is int else "a number") + (" " + " and ".join(bounds) if bounds else "")

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        too_low = low is not None and (value <= low if above else value < low)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value

    parse.__name__ = wanted  # argparse names the type by it
    return parse


COUNT = ranged(int, 1)  # how many of something, at least one
NON_NEGATIVE = ranged(int, 0)  # a count or index where 0 means none / the default
POSITIVE = ranged(float, 0, above=True)  # a size or duration
SHARE = ranged(float, 0, 1)  # a fraction or probability

OVERWRITE_HELP = "replace an existing output (written aside, swapped in only when complete)"

OPTION = "megacpt.option"  # the key of a field's ``Flag`` in its metadata


@dataclass(frozen=True)
class Flag:
    """What a field's type and default do not say about its command-line option."""

    names: tuple[str, ...] = ()  # the option's names (default: --field-name); more are aliases
    type: Callable[[str], Any] | None = None  # parses one value (default: the annotation's type)
    choices: tuple[Any, ...] | None = None  # the values allowed (a Literal annotation gives its own)
    positional: bool = False
    repeat: bool = False  # a tuple field filled by repeating the option, not by one list of values
    metavar: str | None = None
    help: str | None = None  # when the field has no docstring (a shared field)
    default_text: str | None = None  # how --help states the default (default: the default itself)


def flag(default: Any = MISSING, *names: str, **settings: Any) -> Any:
    """A field with command-line settings (``Flag``): ``x: int = flag(8, "--x", "--old-x", type=COUNT)``."""
    return field(default=default, metadata={OPTION: Flag(names=names, **settings)})


def overwrite_flag() -> Any:
    """``--overwrite``: see the module docstring."""
    return flag(False, help=OVERWRITE_HELP)


def json_key_flag(default: str, old_name: str | None = None) -> Any:
    """``--json-keys KEY``: the one JSON field a tool reads (``old_name``: a hidden alias kept working)."""
    names = ("--json-keys", *((old_name,) if old_name else ()))
    return flag(default, *names, metavar="KEY", help="JSON field holding the text")


def workers_flag(default: int, what: str, old_name: str | None = None) -> Any:
    """``--workers N``: the cores a tool may use; ``what`` says as what (processes, threads)."""
    names = ("--workers", *((old_name,) if old_name else ()))
    return flag(default, *names, type=COUNT, help=what)


def language_items(
    items: Iterable[str], option: str, default: str | None = None, what: str = "VALUE"
) -> list[tuple[str, str]]:
    """``LANG=VALUE`` items (or plain ``VALUE`` ones, of language ``default``) as (language, value)."""
    out = []
    for item in items:
        lang, sep, value = item.partition("=")
        if not sep and default is not None:
            lang, value = default, item
        elif not sep or not lang or not value:
            raise UserError(f"{option} takes LANG={what}, got {item!r}")
        out.append((lang, value))
    return out


def by_language(
    items: Iterable[str], option: str, default: str | None = None, what: str = "VALUE"
) -> dict[str, str]:
    """``language_items`` with one value per language (a language given twice is an error)."""
    out: dict[str, str] = {}
    for lang, value in language_items(items, option, default, what):
        if lang in out:
            raise UserError(f"{option} gives {lang} twice ({out[lang]}, {value})")
        out[lang] = value
    return out


T = TypeVar("T")


def parse(
    options: type[T],
    argv: list[str] | None,
    description: str,
    *,
    intermixed: bool = False,
    module_form: str | None = None,
) -> T:
    """Parse ``argv`` into an ``options`` dataclass (its checks run); ``description`` heads ``--help``
    (kept as written when it has several lines). ``intermixed``: options may follow positionals.
    ``module_form``: the usage's name when not run as ``megacpt VERB`` (``python -m megacpt.train``)."""
    parser = _parser(description, program(module_form) if module_form else None)
    _add_options(parser, options)
    namespace = parser.parse_intermixed_args(argv) if intermixed else parser.parse_args(argv)
    return _build(options, namespace)


def parse_command(commands: dict[str, tuple[type, str]], argv: list[str] | None, description: str) -> Any:
    """Parse ``COMMAND [options]`` into the options dataclass of ``commands[COMMAND]`` (class, help)."""
    parser = _parser(description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(commands) + "}")
    for name, (options, help_text) in commands.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        _add_options(command, options)
        command.set_defaults(options_class=options)
    namespace = parser.parse_args(argv)
    return _build(namespace.options_class, namespace)


def _parser(description: str, prog: str | None = None) -> ArgumentParser:
    raw = "\n" in description.strip()
    formatter = argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter
    return ArgumentParser(prog=prog, description=description, formatter_class=formatter)


def _build(options: type[T], namespace: argparse.Namespace) -> T:
    values = {f.name: getattr(namespace, f.name) for f in fields(options)}  # type: ignore[arg-type]
    hints = get_type_hints(options)
    for name, value in values.items():
        if isinstance(value, list) and get_origin(_unwrap(hints[name])) is tuple:
            values[name] = tuple(value)
    return options(**values)


def _add_options(parser: argparse.ArgumentParser, options: type) -> None:
    hints = get_type_hints(options)
    docs = field_docs(options)
    for item in fields(options):
        spec: Flag = item.metadata.get(OPTION, Flag())
        parser.add_argument(*_names(item, spec), **_settings(item, spec, hints[item.name], docs))


def _names(item: Field, spec: Flag) -> tuple[str, ...]:
    if spec.positional:
        return (item.name,)
    return spec.names or ("--" + item.name.replace("_", "-"),)


def _settings(item: Field, spec: Flag, hint: Any, docs: dict[str, str]) -> dict[str, Any]:
    """argparse's settings for one field: its action or type, nargs, choices, default and help."""
    kind = _unwrap(hint)
    default: Any = item.default
    required = default is MISSING
    settings: dict[str, Any] = {} if spec.positional else {"dest": item.name}
    if kind is bool:
        if default and not spec.names:
            raise TypeError(f"{item.name}: an option that is on by default needs a --no-... name")
        settings["action"] = "store_false" if default else "store_true"
    else:
        many = get_origin(kind) in (tuple, list)
        one = get_args(kind)[0] if many else kind
        if get_origin(one) is Literal:
            settings["choices"] = get_args(one)
        else:
            settings["type"] = spec.type or one
        if spec.choices is not None:
            settings["choices"] = spec.choices
        if many:
            if spec.repeat:
                if default:
                    raise TypeError(
                        f"{item.name}: a repeated option starts empty (argparse appends to its default)"
                    )
                settings["action"] = "append"
            else:
                settings["nargs"] = "*" if spec.positional and not required else "+"
        if spec.metavar:
            settings["metavar"] = spec.metavar
    if required and not spec.positional:
        settings["required"] = True
    if not required:
        settings["default"] = list(default or ()) if spec.repeat else default
    if spec.help == argparse.SUPPRESS:
        settings["help"] = argparse.SUPPRESS
        return settings
    help_text = (docs.get(item.name) or spec.help or "").replace("%", "%%")  # argparse formats help with %
    stated = (spec.default_text or _stated(default)).replace("%", "%%")
    if not required and kind is not bool and stated and "default" not in help_text:
        help_text = f"{help_text} (default: {stated})".strip()
    settings["help"] = help_text or None
    return settings


def _stated(default: Any) -> str:
    """A default as ``--help`` states it; none for an unset optional or an empty list."""
    if default is None or default == () or default is MISSING:
        return ""
    if isinstance(default, (tuple, list)):
        return " ".join(map(str, default))
    return str(default)


def _unwrap(hint: Any) -> Any:
    """``X | None`` -> ``X``: an option left out keeps its default, ``None``."""
    if get_origin(hint) in (Union, types.UnionType):
        kinds = [k for k in get_args(hint) if k is not type(None)]
        if len(kinds) == 1:
            return kinds[0]
    return hint


def field_docs(options: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (also inherited ones), by field name, read
    from its module's source (no source, as in a frozen install: help without descriptions)."""
    docs: dict[str, str] = {}
    for klass in reversed(options.__mro__[:-1]):
        path = getattr(sys.modules.get(klass.__module__), "__file__", None)
        body = _class_body(path, klass.__name__) if path else []
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


@functools.cache
def _module_tree(path: str) -> ast.Module | None:
    try:
        return ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _class_body(path: str, name: str) -> list[ast.stmt]:
    """The statements of class ``name`` in the module at ``path`` (``inspect.getsource`` scans every
    loaded module to find it: 0.1 s once numpy is loaded)."""
    tree = _module_tree(path)
    found = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name] if tree else []
    return found[0].body if found else []
