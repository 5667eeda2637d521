"""The API reference is complete: every public name has a page, every parameter a line."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncheartbeat
import asyncheartbeat.instrumentation
import asyncheartbeat.testing
from asyncheartbeat.testing import _fixtures as fixtures
from asyncheartbeat.testing import pytest_plugin

REFERENCE = Path(__file__).parent.parent / "docs" / "reference"


def public_modules() -> list[types.ModuleType]:
    """asyncheartbeat and each of its modules whose dotted name has no ``_`` part, such as
    ``asyncheartbeat.instrumentation``: a new public module is checked without a word here."""
    names = [
        info.name
        for info in pkgutil.walk_packages(asyncheartbeat.__path__, "asyncheartbeat.")
        if not any(part.startswith("_") for part in info.name.split("."))
        and info.name != pytest_plugin.__name__  # its fixtures are checked by name below
    ]
    return [asyncheartbeat, *(importlib.import_module(name) for name in sorted(names))]


MODULES = public_modules()
# Google-style sections whose entries name parameters.
PARAMETER_SECTIONS = ("Args", "Arguments", "Parameters", "Keyword Args", "Keyword Arguments")
ATTRIBUTE_SECTIONS = ("Attributes",)


def documented_names(docstring: str | None, sections: tuple[str, ...]) -> set[str]:
    """The names listed in a Google-style docstring's ``sections``."""
    names: set[str] = set()
    lines = inspect.cleandoc(docstring or "").splitlines()
    in_section = False
    for line in lines:
        header = re.fullmatch(r"(\w[\w ]*):\s*", line)
        if header and not line.startswith(" "):
            in_section = header.group(1) in sections
            continue
        if line and not line.startswith(" "):
            in_section = False
        if in_section and (entry := re.match(r"    (\*{0,2}\w+)(?: \([^)]*\))?:", line)):
            names.add(entry.group(1).lstrip("*"))
    return names


#: A docstring's one line for the arguments it shares with a public class documented there.
DELEGATION = re.compile(r"The other arguments are those of `(\w+)`")


def delegated_names(docstring: str | None) -> set[str]:
    """The parameters a docstring leaves to a public class's (``The other arguments are
    those of `Heartbeat`...``): those that class's own docstring describes."""
    found = DELEGATION.search(inspect.cleandoc(docstring or "").replace("\n", " "))
    if found is None:
        return set()
    cls = getattr(asyncheartbeat, found.group(1))
    return documented_names(cls.__doc__, PARAMETER_SECTIONS) & set(parameters(cls))


def parameters(function: Callable[..., object]) -> list[str]:
    """The parameters a caller passes to ``function`` (not self or cls)."""
    signature = inspect.signature(function)
    return [name for name in signature.parameters if name not in ("self", "cls")]


def public_methods(cls: type) -> Iterator[tuple[str, Callable[..., object]]]:
    """The public methods defined by ``cls`` itself (properties have no parameters)."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        function = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        if inspect.isfunction(function):
            yield name, function


def undocumented_parameters(qualname: str, obj: object) -> Iterator[str]:
    """``qualname(parameter=)`` for each parameter of ``obj`` its docstring does not
    describe, and ``qualname(name?)`` for each it describes that ``obj`` does not take."""
    if isinstance(obj, type):
        if issubclass(obj, enum.Enum):
            documented = documented_names(obj.__doc__, ATTRIBUTE_SECTIONS)
            yield from (f"{qualname}.{m.name}" for m in obj if m.name not in documented)
            return
        init_documented = documented_names(obj.__doc__, PARAMETER_SECTIONS)
        init_documented |= documented_names(
            vars(obj).get("__init__", object.__init__).__doc__, PARAMETER_SECTIONS
        )
        if dataclasses.is_dataclass(obj):
            init_documented |= documented_names(obj.__doc__, ATTRIBUTE_SECTIONS)
        init = vars(obj).get("__init__")
        is_protocol = getattr(obj, "_is_protocol", False)
        if (init is not None or dataclasses.is_dataclass(obj)) and not is_protocol:
            for name in parameters(obj):
                if name not in init_documented and not name.startswith("_"):
                    yield f"{qualname}({name}=)"
            described = documented_names(obj.__doc__, PARAMETER_SECTIONS)
            yield from (f"{qualname}({name}?)" for name in described - set(parameters(obj)))
        for method_name, method in public_methods(obj):
            yield from undocumented_parameters(f"{qualname}.{method_name}", method)
    elif inspect.isfunction(obj):
        documented = documented_names(obj.__doc__, PARAMETER_SECTIONS)
        # Only those it takes: the class's others are not stale lines of this one.
        documented |= delegated_names(obj.__doc__) & set(parameters(obj))
        for name in parameters(obj):
            if name not in documented:
                yield f"{qualname}({name}=)"
        # A line for a parameter that is not there: renamed or removed, the docs left behind.
        yield from (f"{qualname}({name}?)" for name in documented - set(parameters(obj)))


def public_objects() -> Iterator[tuple[str, object]]:
    for module in MODULES:
        for name in getattr(module, "__all__", ()):
            yield f"{module.__name__}.{name}", getattr(module, name)
    # The plugin's fixtures live where the plugin registers them from (with pytest-asyncio).
    for name in ("local_datapipeline", "datapipeline_client"):
        yield f"{fixtures.__name__}.{name}", getattr(fixtures, name)


def test_every_public_module_says_what_is_public() -> None:
    """Each public module has an __all__: what the reference must show."""
    assert {m.__name__ for m in MODULES} >= {
        "asyncheartbeat.instrumentation",
        "asyncheartbeat.testing",
    }
    assert [m.__name__ for m in MODULES if not hasattr(m, "__all__")] == []


def test_every_public_name_has_a_place_in_the_reference() -> None:
    """Each name in a public module's __all__ is rendered by a `::: module.name` line."""
    pages = "\n".join(page.read_text() for page in REFERENCE.glob("*.md"))
    rendered = set(re.findall(r"^::: ([\w.]+)$", pages, re.MULTILINE))
    missing = [qualname for qualname, _ in public_objects() if qualname not in rendered]
    assert not missing, f"not in docs/reference/*.md: {missing}"


def test_every_public_name_has_a_docstring() -> None:
    """A name without a docstring renders as a bare signature."""
    bare = [qualname for qualname, obj in public_objects() if not inspect.getdoc(obj)]
    assert not bare


def test_every_parameter_of_a_public_callable_is_described() -> None:
    """Each parameter of a public callable has a line under Args:, and each enum member one."""
    missing = [
        entry
        for qualname, obj in public_objects()
        for entry in undocumented_parameters(qualname, obj)
    ]
    assert not missing, (
        f"parameters without a line under Args: (name=), or with a stale one (name?): {missing}"
    )


def test_the_checker_sees_a_parameter_left_out() -> None:
    """The check itself: a docstring that forgets a parameter is caught, a full one is not."""

    def forgot(task_id: str, *, interval: float) -> None:
        """Do it.

        Args:
            task_id: the task.
        """

    def listed(task_id: str, *, interval: float) -> None:
        """Do it.

        Args:
            task_id (str): the task.
            interval: seconds.

        Returns:
            Nothing.
        """

    def stale(task_id: str) -> None:
        """Do it.

        Args:
            task_id: the task.
            interval: a parameter that was removed.
        """

    assert list(undocumented_parameters("forgot", forgot)) == ["forgot(interval=)"]
    assert list(undocumented_parameters("listed", listed)) == []
    assert list(undocumented_parameters("stale", stale)) == ["stale(interval?)"]

    def delegates(task_id: str, *, interval: float, rows: int) -> None:
        """Do it.

        The other arguments are those of `Heartbeat`.
        """

    assert list(undocumented_parameters("delegates", delegates)) == ["delegates(rows=)"]
    assert isinstance(forgot, types.FunctionType)
