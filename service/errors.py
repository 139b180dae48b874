"""Request failures shared by HTTP and gRPC, each with a status and a reason label."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse

from service.schemas import ErrorBody


@dataclass
class ServiceError(Exception):
    """A request that cannot be served; `reason` is the metrics label, `status` the HTTP code."""

    status: int
    reason: str
    message: str
    field: str | None = None
    request_id: str | None = None
    retry_after_s: int | None = None

    def __str__(self) -> str:
        return self.message

    def to_response(self) -> JSONResponse:
        body = ErrorBody(error=self.message, field=self.field, request_id=self.request_id)
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return JSONResponse(body.model_dump(), status_code=self.status, headers=headers)


def invalid_image(message: str, field: str = "image", request_id: str | None = None) -> ServiceError:
    return ServiceError(400, "invalid_image", message, field, request_id)


def invalid_parameter(message: str, field: str | None, request_id: str | None = None) -> ServiceError:
    return ServiceError(400, "invalid_parameter", message, field, request_id)


def overloaded(limit: int, retry_after_s: int, request_id: str | None = None) -> ServiceError:
    return ServiceError(
        429,
        "overloaded",
        f"the service is at its limit of {limit} images in flight; retry after {retry_after_s} s",
        None,
        request_id,
        retry_after_s,
    )


def timed_out(seconds: float, request_id: str | None = None) -> ServiceError:
    return ServiceError(504, "timeout", f"the request did not finish within {seconds:g} s", None, request_id)


def backend_failed(request_id: str | None = None) -> ServiceError:
    return ServiceError(
        503,
        "backend_error",
        "the model failed on the batch holding this request; retry, and check the service log for the request id",
        None,
        request_id,
    )


def queue_timeout(waited_s: float, max_latency_s: float, retry_after_s: int, request_id: str | None = None) -> ServiceError:
    return ServiceError(
        503,
        "queue_timeout",
        f"the request waited {waited_s:.1f} s for a model batch, above batching.max_latency_ms "
        f"({max_latency_s * 1000:g} ms); retry after {retry_after_s} s",
        None,
        request_id,
        retry_after_s,
    )


def shutting_down(request_id: str | None = None) -> ServiceError:
    return ServiceError(503, "shutting_down", "the service is shutting down; retry on another instance", None, request_id, 1)


def not_ready(request_id: str | None = None) -> ServiceError:
    return ServiceError(503, "not_ready", "the model is still loading; retry shortly", None, request_id, 1)
