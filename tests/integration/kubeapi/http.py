"""Plain HTTP calls to the test double (urllib), for what kubectl does not do."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any


def call(
    url: str,
    method: str = "GET",
    body: Any = None,
    content_type: str = "application/json",
    token: str | None = None,
    ca_pem: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    """(status code, decoded body) of one request; errors are answers, not exceptions."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", content_type)
    request.add_header("Accept", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
