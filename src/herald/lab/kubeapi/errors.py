"""API errors as kube-apiserver reports them: a metav1.Status body with reason and code."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request that fails; `status()` is the body the server answers with."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(group: str, resource: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": resource}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def _about(code: int, reason: str, group: str, resource: str, name: str, what: str) -> ApiError:
    message = f'{_qualified(group, resource)} "{name}" {what}'
    return ApiError(code, reason, message, _details(group, resource, name))


def not_found(group: str, resource: str, name: str) -> ApiError:
    return _about(404, "NotFound", group, resource, name, "not found")


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return _about(409, "AlreadyExists", group, resource, name, "already exists")


def conflict(group: str, resource: str, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": '
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(409, "Conflict", message, _details(group, resource, name))


def expired(resource_version: str, oldest: int) -> ApiError:
    return ApiError(
        410,
        "Expired",
        f"too old resource version: {resource_version} ({oldest})",
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(group: str, kind: str, name: str, message: str) -> ApiError:
    """422, which kube-apiserver words with the kind (not the resource) of the object."""
    return _about(422, "Invalid", group, kind, name, f"is invalid: {message}")


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        f"application/apply-patch+yaml; got {content_type}",
    )


def success_status(group: str, resource: str, name: str, uid: str) -> dict[str, Any]:
    details = _details(group, resource, name)
    details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
