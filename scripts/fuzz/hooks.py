"""Schemathesis hooks for scripts/fuzz-api.

A client sends a new Idempotency-Key for each new request and the same key only to retry
the same request (docs/sessions.md). Generated keys repeat (Hypothesis draws small values
such as "0" again and again), and a repeated key with another body is answered 422
`idempotency_key_reused`, as documented, which Schemathesis would count as a valid request
refused. So a key the schema accepts is made unique per request; keys the schema refuses
(empty, too long, with spaces) are sent as generated, and must be refused.
"""

import re
import uuid

import schemathesis

_VALID_KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() == "idempotency-key":
            value = headers[name]
            if isinstance(value, str) and _VALID_KEY.match(value):
                headers[name] = f"fuzz-{uuid.uuid4()}"
