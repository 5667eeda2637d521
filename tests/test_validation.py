"""Bad input is refused before any call, with an error naming what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from asyncheartbeat import Heartbeat
from asyncheartbeat.testing import LocalDataPipeline

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(
    ("task_id", "message"),
    [
        ("", "task_id '' must not be empty"),
        ("t" * 2049, "2049 characters, more than the 2048 allowed"),
        ("bad\x00id", r"contains '\x00' at index 3"),
        ("lone\ud800surrogate", r"contains '\ud800' at index 4"),
    ],
)
async def test_a_bad_task_id_is_refused_before_any_call(
    dp: LocalDataPipeline, client: Any, task_id: str, message: str
) -> None:
    """task_id is checked against the model's length and pattern, naming the problem."""
    with pytest.raises(ValueError, match="task_id") as caught:
        Heartbeat(client, task_id)
    assert message in str(caught.value)
    assert dp.calls == []


async def test_the_longest_task_id_and_astral_characters_are_accepted(
    dp: LocalDataPipeline, client: Any
) -> None:
    """2048 characters, tabs and characters beyond the BMP are within the model's rules."""
    task_id = dp.add_task("🚀\t" + "t" * 2046)
    async with Heartbeat(client, task_id, interval=30, lease_timeout=100, fields={"k": "🚀"}):
        pass
    assert dp.reports(task_id)[0].task_id == task_id


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ([{"stringValue": "x"}], ValueError, "fields[0] has no 'key'"),
        ([{"key": "a"}], ValueError, "field 'a' must have exactly one of stringValue and refValue"),
        (
            [{"key": "a", "stringValue": "x", "refValue": "y"}],
            ValueError,
            "field 'a' must have exactly one of",
        ),
        ([{"key": "", "stringValue": "x"}], ValueError, "field key '' must not be empty"),
        ([{"key": "k" * 257, "stringValue": "x"}], ValueError, "257 characters, more than the 256"),
        ([{"key": "a", "refValue": "r" * 257}], ValueError, "refValue of field 'a' has 257"),
        ([{"key": "a", "refValue": ""}], ValueError, "refValue of field 'a' must not be empty"),
        ([{"key": "a", "stringValue": "s" * 10241}], ValueError, "10241 characters, more than"),
        ([{"key": "a", "stringValue": "\x07"}], ValueError, r"contains '\x07' at index 0"),
        ([{"key": "a", "value": "x"}], ValueError, "unknown members ['value']"),
        ([{"key": "a", "stringValue": 5}], TypeError, "stringValue of field 'a' must be a str"),
        (
            [{"key": "a", "stringValue": "1"}, {"key": "a", "stringValue": "2"}],
            ValueError,
            "field key 'a' is given twice",
        ),
        (["a=b"], TypeError, "fields[0] must be a dict"),
        ("a=b", TypeError, "not a string"),
        ({"a": 1}, TypeError, "stringValue of field 'a' must be a str, not int"),
    ],
)
async def test_bad_fields_are_refused_before_any_call(
    dp: LocalDataPipeline, client: Any, fields: Any, error: type[Exception], message: str
) -> None:
    """Each malformed field is refused at construction, naming the field and its problem."""
    with pytest.raises(error) as caught:
        Heartbeat(client, dp.add_task(), fields=fields)
    assert message in str(caught.value)
    assert dp.calls == []


async def test_field_setters_check_their_input(dp: LocalDataPipeline, client: Any) -> None:
    """set_field and set_ref refuse what the service would, before the next report."""
    hb = Heartbeat(client, dp.add_task())
    with pytest.raises(ValueError, match="stringValue of field 'x' has 10241 characters"):
        hb.set_field("x", "s" * 10241)
    with pytest.raises(ValueError, match="refValue of field 'x' must not be empty"):
        hb.set_ref("x", "")
    with pytest.raises(TypeError, match="field key must be a str, not int"):
        hb.set_field(3, "x")  # type: ignore[arg-type]
    assert hb.fields == []


async def test_fields_take_the_wire_shape_or_a_mapping(dp: LocalDataPipeline, client: Any) -> None:
    """Both input shapes reach the service as the API's list of field dicts."""
    task_id = dp.add_task()
    wire = [{"key": "a", "stringValue": "1"}, {"key": "b", "refValue": "@obj"}]
    async with Heartbeat(client, task_id, interval=30, lease_timeout=100, fields=wire) as hb:
        hb.remove_field("a")
        hb.set_field("c", "3")
    assert dp.reports(task_id)[0].params["fields"] == wire
    assert dp.reports(task_id)[1].params["fields"] == [
        {"key": "b", "refValue": "@obj"},
        {"key": "c", "stringValue": "3"},
    ]
    mapped = Heartbeat(client, dp.add_task(), fields={"a": "1"})
    assert mapped.fields == [{"key": "a", "stringValue": "1"}]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"interval": 0}, ValueError, "interval must be a finite number of seconds greater than 0"),
        ({"interval": -1}, ValueError, "interval must be"),
        ({"interval": float("nan")}, ValueError, "interval must be"),
        ({"interval": "60"}, TypeError, "interval must be a number of seconds, not str"),
        ({"interval": True}, TypeError, "interval must be a number"),
        ({"interval": 60, "lease_timeout": 60}, ValueError, "must be greater than interval"),
        ({"lease_timeout": float("inf")}, ValueError, "lease_timeout must be a finite"),
        ({"call_timeout": 300}, ValueError, "leaves no room for a second attempt"),
        (
            {"interval": 60, "lease_timeout": 100, "call_timeout": 40},
            ValueError,
            "must be more than interval (60 s) plus call_timeout (40 s)",
        ),
        ({"call_timeout": 0}, ValueError, "call_timeout must be"),
    ],
)
async def test_invalid_timing_is_refused(
    client: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Timing that cannot keep a lease is refused at construction, naming the option."""
    with pytest.raises(error) as caught:
        Heartbeat(client, "task-1", **options)
    assert message in str(caught.value)


async def test_the_default_call_timeout_leaves_room_for_a_second_attempt(client: Any) -> None:
    """call_timeout defaults to one interval, and never more than half of what the lease
    leaves after one interval."""
    assert Heartbeat(client, "t")._lease.timing.call_timeout == 60
    assert Heartbeat(client, "t", interval=200, lease_timeout=300)._lease.timing.call_timeout == 50
