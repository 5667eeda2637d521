"""The operations table: one function per emulated API operation, params in, answer out.

Each reads or changes `DataPipelineService`; the wire has checked the request against the
model before. PollForTask, which waits, is the one coroutine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import anyio

from asyncheartbeat.testing._errors import ServiceError
from asyncheartbeat.testing._service import DataPipelineService, Pipeline

Operation: TypeAlias = Callable[[DataPipelineService, dict[str, Any], float], dict[str, Any]]

#: The emulated operations but PollForTask, by name.
OPERATIONS: dict[str, Operation] = {}


def operation(name: str) -> Callable[[Operation], Operation]:
    """Put the function in `OPERATIONS` under the API's ``name``."""

    def register(function: Operation) -> Operation:
        OPERATIONS[name] = function
        return function

    return register


async def answer(
    service: DataPipelineService,
    operation: str,
    params: dict[str, Any],
    now: float,
    stopping: anyio.Event,
) -> dict[str, Any]:
    """The service's answer to a valid request; a `ServiceError` for its error answers."""
    if operation == "PollForTask":
        return await poll_for_task(service, params, now, stopping)
    function = OPERATIONS.get(operation)
    if function is None:
        raise ServiceError(
            "InvalidRequestException", f"{operation} is not emulated by this local Data Pipeline"
        )
    return function(service, params, now)


async def poll_for_task(
    service: DataPipelineService, params: dict[str, Any], now: float, stopping: anyio.Event
) -> dict[str, Any]:
    """A task when one is ready, or ``{}`` after the poll timeout (or when the server stops)."""
    worker_group, hostname = params["workerGroup"], params.get("hostname")
    give_up_at = now + service.timeouts.poll
    while True:
        task = service.take_task(worker_group, hostname, now)
        if task is not None:
            return {"taskObject": task}
        if now >= give_up_at or stopping.is_set():
            return {}
        # Wake for a new task, or when a lease runs out and may hand one back.
        lease_ends = service.next_deadline()
        wake_at = give_up_at if lease_ends is None else min(give_up_at, lease_ends)
        with anyio.CancelScope(deadline=wake_at):
            await service.ready_event(worker_group).wait()
        now = anyio.current_time()
        service.expire(now)


@operation("CreatePipeline")
def _create_pipeline(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    pipeline_id = service.create_pipeline(
        params["name"], params["uniqueId"], params.get("description", ""), params.get("tags")
    )
    return {"pipelineId": pipeline_id}


def _definition(
    service: DataPipelineService, params: dict[str, Any], *, save: bool
) -> dict[str, Any]:
    return service.put_definition(
        params["pipelineId"],
        params["pipelineObjects"],
        params.get("parameterObjects", []),
        params.get("parameterValues", []),
        save=save,
    )


@operation("PutPipelineDefinition")
def _put_pipeline_definition(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    return _definition(service, params, save=True)


@operation("ValidatePipelineDefinition")
def _validate_pipeline_definition(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    return _definition(service, params, save=False)


@operation("GetPipelineDefinition")
def _get_pipeline_definition(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    pipeline = service.pipeline(params["pipelineId"], "GetPipelineDefinition")
    return {
        "pipelineObjects": list(pipeline.objects.values()),
        "parameterObjects": pipeline.parameter_objects,
        "parameterValues": pipeline.parameter_values,
    }


@operation("ActivatePipeline")
def _activate_pipeline(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    service.activate(params["pipelineId"])
    return {}


@operation("DeactivatePipeline")
def _deactivate_pipeline(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    service.deactivate(params["pipelineId"], params.get("cancelActive", True))
    return {}


@operation("DeletePipeline")
def _delete_pipeline(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    service.delete(params["pipelineId"])
    return {}


@operation("ListPipelines")
def _list_pipelines(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    listed = [p for p in service.pipelines.values() if not p.deleted]
    return {
        "pipelineIdList": [{"id": p.pipeline_id, "name": p.name} for p in listed],
        "hasMoreResults": False,
    }


@operation("DescribePipelines")
def _describe_pipelines(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    pipelines = [service.pipeline(i, "DescribePipelines") for i in params["pipelineIds"]]
    return {"pipelineDescriptionList": [_describe_pipeline(p) for p in pipelines]}


@operation("DescribeObjects")
def _describe_objects(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    pipeline = service.pipeline(params["pipelineId"], "DescribeObjects")
    objects = []
    for object_id in params["objectIds"]:
        if object_id in pipeline.attempts:
            objects.append(pipeline.attempts[object_id].as_object())
        elif object_id in pipeline.objects:
            objects.append(pipeline.objects[object_id])
    return {"pipelineObjects": objects, "hasMoreResults": False}


@operation("QueryObjects")
def _query_objects(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    pipeline = service.pipeline(params["pipelineId"], "QueryObjects")
    # The query's selectors are not emulated: every object of the sphere is listed.
    spheres = {"COMPONENT": pipeline.objects}
    return {
        "ids": list(spheres.get(params["sphere"], pipeline.attempts)),
        "hasMoreResults": False,
    }


@operation("SetStatus")
def _set_status(service: DataPipelineService, params: dict[str, Any], now: float) -> dict[str, Any]:
    service.set_status(params["pipelineId"], params["objectIds"], params["status"])
    return {}


@operation("ReportTaskProgress")
def _report_task_progress(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    fields = params.get("fields", [])
    return {"canceled": service.report_progress(params["taskId"], fields, now)}


@operation("SetTaskStatus")
def _set_task_status(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    service.set_task_status(
        params["taskId"],
        params["taskStatus"],
        params.get("errorId"),
        params.get("errorMessage"),
        params.get("errorStackTrace"),
    )
    return {}


@operation("ReportTaskRunnerHeartbeat")
def _report_task_runner_heartbeat(
    service: DataPipelineService, params: dict[str, Any], now: float
) -> dict[str, Any]:
    return {"terminate": service.runner_heartbeat(params, now)}


def _describe_pipeline(pipeline: Pipeline) -> dict[str, Any]:
    fields = [
        {"key": "name", "stringValue": pipeline.name},
        {"key": "uniqueId", "stringValue": pipeline.unique_id},
        {"key": "@pipelineState", "stringValue": pipeline.state},
        {"key": "@id", "stringValue": pipeline.pipeline_id},
        {"key": "@sphere", "stringValue": "PIPELINE"},
    ]
    description = {"pipelineId": pipeline.pipeline_id, "name": pipeline.name, "fields": fields}
    if pipeline.description:
        description["description"] = pipeline.description
    if pipeline.tags:
        description["tags"] = pipeline.tags
    return description
