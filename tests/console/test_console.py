"""The operations console in a real headless Chromium, against a real API, worker and receiver:
sign-in, live updates without a reload, replay, breaker reset, report download, and what a
producer key may not do."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from compliance.store.breakers import BreakerResult
from compliance.store.records import Status
from tests.console.conftest import ROOT_PATH, Stack, sign_in
from tests.reports.evidence import cloud_pass
from tests.support.receiver import Reply
from tests.support.services import ADMIN_KEY, PRODUCER_KEY, wait_until

pytestmark = pytest.mark.console


def nav(page, name: str):  # type: ignore[no-untyped-def]
    """A link of the main navigation."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def unique(prefix: str) -> str:
    return f"/{prefix}-{uuid.uuid4().hex[:8]}"


def dead_letter(stack: Stack, path: str) -> str:
    """A webhook the receiver refuses with a 400 (not retried): dead-lettered at once."""
    stack.receiver.script(path, Reply(status=400, body=b"no such tenant"))
    accepted = stack.post("/webhooks", {"url": stack.receiver.url(path), "event": "report.completed",
                                        "payload": {"n": 1}})
    webhook_id = str(accepted["webhook_id"])
    wait_until(lambda: stack.container.dead_letters.get(webhook_id) is not None, timeout=30,
               message="the webhook was not dead-lettered")
    return webhook_id


def test_sign_in_refuses_a_wrong_key_and_sets_a_strict_session_cookie(context, stack: Stack, shoot) -> None:
    page = context.new_page()
    answer = page.goto(stack.console)
    assert answer is not None and answer.status == 200
    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    shoot(page, "signin")
    page.get_by_label("API key").fill("not-a-key-0123456789")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").get_by_text("not valid").wait_for()
    assert not [c for c in context.cookies() if c["name"] == "compliance_console"]

    page = sign_in(context, stack)
    session = next(c for c in context.cookies() if c["name"] == "compliance_console")
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["path"] == f"{ROOT_PATH}/console"
    assert ADMIN_KEY not in session["value"]
    # Redis holds the session under a hash of the token, never the key or the token itself.
    stored = [k for k in stack.redis.scan_iter("compliance:console_session:*")]
    assert stored and all(session["value"] not in k for k in stored)
    assert all(ADMIN_KEY not in (stack.redis.get(k) or "") for k in stored)
    # The script and the style come from the package, under the root path (no CDN).
    assert page.locator(f"script[src^='{ROOT_PATH}/console/static/console.js?v=']").count() == 1
    assert page.evaluate("getComputedStyle(document.querySelector('.top')).display") == "flex"


def test_overview_and_webhook_list_update_without_reload(context, stack: Stack, shoot) -> None:
    page = sign_in(context, stack)
    path = unique("slow")
    # Slow answers keep it pending, then retrying, long enough to be seen; 503 first, then 200.
    stack.receiver.script(path, Reply(status=503, delay=3.0), Reply(status=200, delay=2.0))
    nav(page, "Webhooks").click()
    page.get_by_role("heading", name="Webhooks").wait_for()
    page.evaluate("window.__noReload = 'still here'")

    accepted = stack.post("/webhooks", {"url": stack.receiver.url(path), "event": "report.completed",
                                        "payload": {"k": "v"}})
    badge = page.locator(f"tr[data-webhook='{accepted['webhook_id']}'] .badge")
    badge.and_(page.locator("[data-status='pending']")).wait_for(timeout=15_000)
    shoot(page, "webhooks")
    badge.and_(page.locator("[data-status='delivered']")).wait_for(timeout=20_000)
    assert page.evaluate("window.__noReload") == "still here"  # the same document: no reload
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the table scrolls in its box
    shoot(page, "webhooks-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    # Its detail lists both attempts: the 503 and the 200.
    page.get_by_role("link", name=str(accepted["webhook_id"])).click()
    attempts = page.locator("#webhook-detail tbody tr")
    attempts.nth(1).wait_for()
    assert attempts.count() == 2
    assert attempts.nth(0).get_by_role("cell", name="503", exact=True).count() == 1
    assert attempts.nth(1).get_by_role("cell", name="200", exact=True).count() == 1
    shoot(page, "webhook-retried")
    assert stack.container.statuses.get(str(accepted["webhook_id"])).status is Status.DELIVERED

    # The overview counts it, and its chart has a point for it, also without a reload.
    nav(page, "Overview").click()
    page.locator("svg.chart polyline.rate").wait_for()
    page.locator("svg.chart circle.success-dot").first.wait_for()  # a minute with a delivery
    # A new dead letter shows up in the overview's count by itself.
    page.evaluate("window.__noReload = 'overview'")
    before = int(page.locator("#dlq-size").inner_text())
    dead_letter(stack, unique("overview"))
    page.locator("#dlq-size", has_text=str(before + 1)).wait_for(timeout=15_000)
    assert page.evaluate("window.__noReload") == "overview"
    shoot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    shoot(page, "overview-390")


def test_open_a_dead_letter_replay_it_and_watch_it_turn_delivered(context, stack: Stack, shoot) -> None:
    path = unique("refuses-once")
    webhook_id = dead_letter(stack, path)  # the next delivery to `path` gets the default 200
    page = sign_in(context, stack)
    # Keyboard only: Tab reaches the navigation (after the skip link), Enter follows it.
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Dead letters":
            break
    else:
        pytest.fail("Tab never reached the Dead letters link")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Dead letters").wait_for()
    page.get_by_role("link", name=webhook_id).click()
    page.get_by_role("heading", name=f"Dead letter {webhook_id}").wait_for()
    assert page.locator("td", has_text="400").count() >= 1
    shoot(page, "dead-letter")

    page.get_by_role("link", name="Replay…").click()
    page.get_by_role("heading", name="Replay a dead letter").wait_for()
    shoot(page, "confirm-replay")
    assert stack.container.dead_letters.get(webhook_id) is not None  # nothing sent before confirming
    page.get_by_role("button", name="Replay").focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", name=f"Webhook {webhook_id}").wait_for()
    page.evaluate("window.__noReload = 1")
    page.locator("#webhook-status[data-status='delivered']").wait_for(timeout=20_000)
    assert page.evaluate("window.__noReload") == 1
    # The replay started its attempts over: delivered at the first one.
    page.locator("#first-try").wait_for()
    shoot(page, "webhook")
    assert stack.container.dead_letters.get(webhook_id) is None
    assert len(stack.receiver.received(path)) == 2


def test_bulk_replay_dry_run_counts_before_sending(context, stack: Stack, shoot) -> None:
    path = unique("bulk")
    ids = [dead_letter(stack, path) for _ in range(2)]
    page = sign_in(context, stack)
    page.goto(f"{stack.console}/dead-letters")
    bulk = page.locator("section.admin")  # the bulk replay form, not the list's filter
    bulk.get_by_label("Destination starts with").fill(stack.receiver.url(path))
    page.get_by_role("button", name="Dry run…").click()
    page.get_by_text("2 dead letters would be replayed").wait_for()
    shoot(page, "bulk-dry-run")
    assert all(stack.container.dead_letters.get(i) is not None for i in ids)  # a dry run sends nothing
    page.get_by_role("button", name="Replay 2").click()
    page.get_by_text("Matched 2, replayed 2").wait_for()
    # The result lists them and shows them turning delivered, in place.
    for webhook_id in ids:
        page.locator(f"#replayed tr[data-webhook='{webhook_id}'] [data-status='delivered']").wait_for(
            timeout=20_000)
    assert all(stack.container.statuses.get(i).status is Status.DELIVERED for i in ids)
    shoot(page, "bulk-replay")


def test_reset_an_open_breaker_after_confirming(context, stack: Stack, shoot) -> None:
    destination = f"http://127.0.0.1:{9000 + uuid.uuid4().int % 500}"
    breakers = stack.container.breakers
    for _ in range(breakers.threshold):
        breakers.record(destination, BreakerResult.FAILURE, was_probe=False)
    assert breakers.get(destination).state == "open"

    page = sign_in(context, stack)
    nav(page, "Breakers").click()
    row = page.locator(f"tr[data-destination='{destination}']")
    row.locator(".badge.open").wait_for()
    shoot(page, "breakers")
    row.get_by_role("link", name="Reset…").click()
    page.get_by_text(f"Close the breaker of {destination}?").wait_for()
    assert breakers.get(destination).state == "open"  # not before the confirmation
    page.get_by_role("button", name="Reset breaker").click()
    page.get_by_text(f"The breaker of {destination} is closed.").wait_for()
    assert breakers.get(destination).state == "closed"
    row.locator(".badge.closed").wait_for()


def test_download_a_report_as_json_csv_and_html(context, stack: Stack, shoot) -> None:
    path = unique("report")
    accepted = stack.post("/reports", {"framework": "cloud-baseline", "subject": "acct-console",
                                       "evidence": cloud_pass(), "webhook_url": stack.receiver.url(path)})
    report_id = str(accepted["report_id"])
    page = sign_in(context, stack)
    nav(page, "Reports").click()
    page.evaluate("window.__noReload = 1")
    row = page.locator(f"tr[data-report='{report_id}']")
    # It may still be queued when the page loads: the list refreshes in place.
    row.get_by_text("completed").wait_for(timeout=30_000)
    assert page.evaluate("window.__noReload") == 1
    shoot(page, "reports")
    with page.expect_download() as info:
        row.get_by_role("link", name="JSON").click()
    document = json.loads(Path(info.value.path()).read_text())
    assert document["report_id"] == report_id and document["results"]
    assert info.value.suggested_filename == f"{report_id}.json"
    with page.expect_download() as info:
        row.get_by_role("link", name="CSV").click()
    assert Path(info.value.path()).read_text().startswith("control_id,")
    with page.expect_download() as info:
        row.get_by_role("link", name="HTML").click()
    assert "<html" in Path(info.value.path()).read_text().lower()


def test_producer_sees_no_replay_and_posts_without_csrf_are_refused(browser, context, stack: Stack,
                                                                     shoot) -> None:
    webhook_id = dead_letter(stack, unique("producer"))
    page = sign_in(context, stack, PRODUCER_KEY)
    assert nav(page, "Dead letters").count() == 0 and nav(page, "Breakers").count() == 0
    page.goto(f"{stack.console}/webhooks/{webhook_id}")
    page.locator("#webhook-status[data-status='failed']").wait_for()
    assert page.get_by_text("Replay").count() == 0
    shoot(page, "webhook-producer")
    answer = page.goto(f"{stack.console}/dead-letters/{webhook_id}")
    assert answer is not None and answer.status == 403
    # The POST behind the replay button: refused for a producer even with its CSRF token ...
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    refused = page.request.post(f"{stack.console}/dead-letters/{webhook_id}/replay",
                                form={"csrf": csrf or ""})
    assert refused.status == 403
    # ... and for an admin session without it, or with a wrong one.
    admin_ctx = browser.new_context()
    try:
        admin = sign_in(admin_ctx, stack)
        for form in ({}, {"csrf": "forged"}):
            refused = admin.request.post(f"{stack.console}/dead-letters/{webhook_id}/replay", form=form)
            assert refused.status == 403
            assert "CSRF" in refused.text()
    finally:
        admin_ctx.close()
    assert stack.container.dead_letters.get(webhook_id) is not None  # nothing was replayed


def test_signed_out_live_fragments_and_actions_are_refused(stack: Stack) -> None:
    live = httpx.get(f"{stack.console}/live/overview", timeout=10)
    assert live.status_code == 401
    post = httpx.post(f"{stack.console}/breakers/reset", data={"name": "x"}, timeout=10)
    assert post.status_code == 401
    # The JSON API is unchanged under the root path and without it.
    assert httpx.get(f"{stack.api.url}/health/live", timeout=10).status_code == 200
