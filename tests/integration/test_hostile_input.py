"""Hostile JSON on the real app and a real Redis: values that parse but have no JSON form again.

A lone UTF-16 surrogate (``"\\ud800"``) parses into a Python string that UTF-8 cannot encode, so
no record holding it can be written (a 500 at submission, or a delivery whose dead letter could
not be written and looped). ``NaN``, ``Infinity`` and ``1e400`` parse into floats that are
serialized as ``null``. Each is a 422 naming the field, and nothing is stored or queued.
"""

from __future__ import annotations

import json

import pytest

from tests.reports import evidence as ev

JSON = {"content-type": "application/json"}
HOOK = "http://127.0.0.1:9/hook"


def webhook(payload_text: str, *, extra: str = "") -> str:
    return '{"url":"' + HOOK + '","event":"e","payload":' + payload_text + extra + "}"


def report(*, evidence: str | None = None, metadata: str = "{}", subject: str = '"acme"') -> str:
    evidence = evidence or json.dumps(ev.cloud_pass())
    return ('{"framework":"cloud-baseline","subject":' + subject + ',"evidence":' + evidence
            + ',"webhook_url":"' + HOOK + '","metadata":' + metadata + "}")


def cloud_with(inner: str) -> str:
    """Valid cloud-baseline evidence with one hostile value spliced in at evidence.account.note."""
    good = json.dumps(ev.cloud_pass())
    return good.replace('"account": {', '"account": {"note": ' + inner + ", ", 1)


# (path, raw JSON body, the field the 422 must name). Every entry parses as JSON.
HOSTILE = [
    # lone surrogates, in values, keys, arrays, at depth
    ("/webhooks", webhook('{"x": "\\ud800"}'), "body.payload.x"),
    ("/webhooks", webhook('{"x": "\\udfff tail"}'), "body.payload.x"),
    ("/webhooks", webhook('{"x": "ok \\ud83d"}'), "body.payload.x"),  # half an emoji pair
    ("/webhooks", webhook('{"\\ud800": 1}'), "body.payload.\\ud800"),
    ("/webhooks", webhook('{"list": [1, "a", "\\udc00"]}'), "body.payload.list.2"),
    ("/webhooks", webhook('{"a": {"b": {"c": ["\\ud800"]}}}'), "body.payload.a.b.c.0"),
    # non-finite numbers: Python's parser takes them, pydantic writes null
    ("/webhooks", webhook('{"x": NaN}'), "body.payload.x"),
    ("/webhooks", webhook('{"x": Infinity}'), "body.payload.x"),
    ("/webhooks", webhook('{"x": -Infinity}'), "body.payload.x"),
    ("/webhooks", webhook('{"x": 1e400}'), "body.payload.x"),
    ("/webhooks", webhook('{"x": [-1e400]}'), "body.payload.x.0"),
    # outside the payload: the URL's path, and an unknown top-level key (quoted in the error)
    ("/webhooks", '{"url":"http://127.0.0.1:9/\\ud800","event":"e","payload":{}}', "body.url"),
    ("/webhooks", webhook("{}", extra=', "\\ud800": 1'), "body"),  # pydantic names only the body
    # reports: evidence, metadata, subject (each was a 500)
    ("/reports", report(evidence=cloud_with('"\\ud800"')), "body.evidence.account.note"),
    ("/reports", report(evidence=cloud_with("NaN")), "body.evidence.account.note"),
    ("/reports", report(evidence=cloud_with("1e400")), "body.evidence.account.note"),
    ("/reports", report(metadata='{"ticket": "\\ud800"}'), "body.metadata.ticket"),
    ("/reports", report(metadata='{"n": Infinity}'), "body.metadata.n"),
    ("/reports", report(metadata='{"\\udbff": "x"}'), "body.metadata.\\udbff"),
    ("/reports", report(subject='"acme \\ud800"'), "body.subject"),
    # admin bulk replay: numbers that are no numbers
    ("/dead-letters/replay", '{"older_than_seconds": 1e400}', "body.older_than_seconds"),
    ("/dead-letters/replay", '{"newer_than_seconds": NaN}', "body.newer_than_seconds"),
    ("/dead-letters/replay", '{"destination": "https://\\ud800"}', "body.destination"),
]


@pytest.mark.parametrize(("path", "body", "field"), HOSTILE,
                         ids=[f"{i:02d}{p}" for i, (p, _, _) in enumerate(HOSTILE)])
def test_hostile_json_is_a_422_naming_the_field_and_stores_nothing(api, r, admin_headers,
                                                                    path, body, field):
    headers = {**JSON, **(admin_headers if path.startswith("/dead-letters") else {})}
    response = api.post(path, content=body.encode(), headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]], error
    response.content.decode("utf-8")  # the error itself is valid UTF-8
    assert r.keys("webhook_status:*") == [] and r.keys("compliance:report:*") == []
    assert r.llen("compliance-compliance_webhooks") == 0
    assert r.llen("compliance-compliance_queue") == 0


def test_the_same_bodies_without_the_hostile_value_are_accepted(api):
    """The 422s above come from the hostile values, not from the shape of the bodies."""
    assert api.post("/webhooks", content=webhook('{"x": "\\ud83d\\ude00", "n": 1e300}'),
                    headers=JSON).status_code == 202  # a whole surrogate pair is fine
    assert api.post("/reports", content=report(evidence=cloud_with('"ok"'),
                                               metadata='{"ticket": "\\u00e9"}'),
                    headers=JSON).status_code == 202
