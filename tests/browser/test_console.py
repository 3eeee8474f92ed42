"""The supervisors' console as a supervisor uses it (issue 13), in Debian's chromium against a real
gateway process. Each test saves its view to docs/screenshots/, which the README shows.

Some views read routes built beside this page (GET /v1/decisions, /v1/events, /v1/calls/{id},
/v1/evidence): a test that needs one skips, naming it, until the gateway serves it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser.conftest import CHROMIUM, Console, Gateway, needs
from tests.fakes.asterisk_agi import FakeAsterisk

if not CHROMIUM.exists():
    pytest.skip(
        "the browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )
expect = pytest.importorskip(
    "playwright.async_api", reason="the browser tests need Playwright for Python (pip install playwright)"
).expect

AU = "+61212345678"  # a Sydney landline: the test DEFAULT pack lets it be called at any hour
NEW_YORK = "+12125550142"


def au(n: int) -> str:
    return f"+612123456{n:02d}"


async def campaign(gw: Gateway, name: str) -> str:
    await gw.api("POST", "/v1/campaigns", json={"name": name, "purpose": "marketing"})
    return name


async def check(gw: Gateway, number: str, name: str) -> dict[str, Any]:
    """A check by the dialer's API: a stored decision like any other."""
    return dict(await gw.api("POST", "/v1/checks", role="dialer", json={"number": number, "campaign": name}))


async def test_sign_in_with_a_supervisor_token(console: Console) -> None:
    page = console.page
    await console.open()
    await page.wait_for_selector("#view-signin:not([hidden])")
    await console.shot("sign-in")
    await console.sign_in("supervisor")
    assert await page.text_content("#who") == "supervisor-1 · supervisor (read-only)"
    assert await page.is_visible("#view-live")
    # The token stays in this tab's sessionStorage, never in an address.
    token = console.gateway.tokens["supervisor"]
    assert token not in page.url
    assert token in await page.evaluate("sessionStorage.getItem('dialguard.session')")
    await page.reload()  # a reload keeps the tab signed in
    await page.wait_for_selector("#who:has-text('supervisor-1')")
    await page.click("#sign-out")
    await page.wait_for_selector("#view-signin:not([hidden])")
    assert await page.evaluate("sessionStorage.length") == 0


async def test_a_wrong_token_is_refused_and_a_dialer_token_too(console: Console) -> None:
    page = console.page
    await console.open()
    await page.fill("#token", "dg_not-a-token")
    await page.press("#token", "Enter")
    await page.wait_for_selector("#signin-error:not([hidden])")
    assert "not accepted" in (await page.text_content("#signin-error") or "")
    assert await page.is_hidden("#top")
    await console.shot("sign-in-refused")
    await page.fill("#token", console.gateway.tokens["dialer"])
    await page.press("#token", "Enter")
    await page.wait_for_selector("#signin-error:has-text('for supervisors and admins')")
    assert await page.evaluate("sessionStorage.length") == 0


async def test_a_fastagi_check_appears_in_the_live_log_within_a_second(console: Console) -> None:
    gw = console.gateway
    needs(gw, "events")
    name = await campaign(gw, "live-log")
    await console.sign_in()
    page = console.page
    await page.wait_for_selector("#live-state[data-state=live]")
    run = await FakeAsterisk("127.0.0.1", gw.agi_port).agi("check", AU, name)
    answered = time.monotonic()
    call_id = run.variables["DIALGUARD_CALL_ID"]
    await page.wait_for_selector(f"#live-rows tr[data-call-id='{call_id}']", timeout=1000)
    shown_after = time.monotonic() - answered
    assert shown_after < 1.0
    row = await page.text_content(f"#live-rows tr[data-call-id='{call_id}']") or ""
    assert AU in row and name in row and "ALLOW" in row
    await console.shot("live-log")


async def test_filters_show_only_the_matching_decisions(console: Console) -> None:
    gw = console.gateway
    needs(gw, "decisions")
    a, b = await campaign(gw, "filters-a"), await campaign(gw, "filters-b")
    await gw.api("POST", "/v1/dnc", json={"number": au(1)})
    allowed = await check(gw, au(2), a)
    blocked = await check(gw, au(1), a)
    other = await check(gw, au(3), b)
    assert (allowed["verdict"], blocked["verdict"], other["verdict"]) == ("ALLOW", "BLOCK", "ALLOW")
    await console.sign_in()
    page = console.page

    async def shown() -> set[str]:
        await page.wait_for_timeout(300)  # the page draws once a frame
        rows = await page.query_selector_all("#live-rows tr")
        return {await r.get_attribute("data-call-id") or "" for r in rows}

    await page.select_option("#live-filters select[name=campaign]", a)
    await page.click("#live-filters button[type=submit]")
    await page.wait_for_selector(f"#live-rows tr[data-call-id='{blocked['call_id']}']")
    assert await shown() == {allowed["call_id"], blocked["call_id"]}
    await page.select_option("#live-filters select[name=verdict]", "BLOCK")
    await page.click("#live-filters button[type=submit]")
    await expect(page.locator("#live-rows tr")).to_have_count(1)
    assert await shown() == {blocked["call_id"]}
    await console.shot("live-filtered")
    await page.click("#live-filters button[type=reset]")
    await page.fill("#live-filters input[name=reason]", "dnc")
    await page.click("#live-filters button[type=submit]")
    await page.locator("#live-rows tr").first.wait_for()
    assert blocked["call_id"] in await shown()
    assert allowed["call_id"] not in await shown()
    await page.fill("#live-filters input[name=reason]", "")
    await page.fill("#live-filters input[name=number]", au(3))
    await page.click("#live-filters button[type=submit]")
    await expect(page.locator("#live-rows tr")).to_have_count(1)
    assert await shown() == {other["call_id"]}


async def test_opening_a_call_shows_every_reason_in_words(console: Console) -> None:
    gw = console.gateway
    listed = gw.routes["decisions"] or gw.routes["events"]  # the call is opened from the log's row
    if not listed:
        needs(gw, "calls")  # ... or by its address, as a link to it would
    name = await campaign(gw, "a-call")
    await gw.api("POST", "/v1/dnc", json={"number": au(4), "source": "complaint"})
    await console.sign_in()
    page = console.page
    if gw.routes["events"]:
        await page.wait_for_selector("#live-state[data-state=live]")
    run = await FakeAsterisk("127.0.0.1", gw.agi_port).agi("check", au(4), name)
    call_id = run.variables["DIALGUARD_CALL_ID"]
    if not listed:
        await console.open(f"#/calls/{call_id}")
    else:
        if not gw.routes["events"]:
            await page.click("#live-filters button[type=submit]")  # the log's first page, read again
        await page.click(f"#live-rows tr[data-call-id='{call_id}'] a")
    await page.wait_for_selector("#call-body .reasons")
    assert await page.text_content("#call-h") == f"Call to {au(4)}"
    failed = page.locator("#call-body li.reason.fail")
    assert await failed.count() == 1
    assert await failed.get_attribute("data-code") == "dnc.internal"
    words = await failed.text_content() or ""
    assert "✗ Failed" in words and "internal do-not-call list" in words and "complaint" in words
    passed = await page.locator("#call-body li.reason.pass").evaluate_all(
        "els => els.map(e => e.dataset.code)"
    )
    assert {"number.ok", "consent.not_required", "hours.within_window", "frequency.ok"} <= set(passed)
    shown = await page.inner_text("#call-body")  # what is on screen: the stored evidence stays folded
    assert "Inside the calling window" in shown and "null" not in shown
    timeline = await page.inner_text("#call-body table.timeline")
    assert "decision\tBLOCK (dnc.internal)" in timeline
    await console.shot("call")


async def test_a_number_explained_says_why_not_and_when(console: Console) -> None:
    gw = console.gateway
    # Consent given, so the hours alone block: 03:00 UTC is 22:00 the evening before in New York.
    await gw.api(
        "POST", "/v1/consents",
        json={"number": NEW_YORK, "purpose": "marketing", "kind": "express_written", "source": "web_form",
              "granted_at": "2026-01-01T00:00:00Z"},
    )  # fmt: skip
    await console.sign_in()
    page = console.page
    await page.click("nav a[data-view=number]")
    await page.fill("#number-form input[name=number]", "+1 212 555 0142")
    await page.fill("#number-form input[name=at]", "2026-11-23T03:00")
    await page.click("#number-form button[type=submit]")
    answer = page.locator("#number-result .answer")
    await answer.wait_for()
    text = await answer.text_content() or ""
    assert f"{NEW_YORK} may not be called at 23 Nov 2026, 03:00:00 UTC" in text
    assert "Calling hours" in text and "22:00" in text and "New York" in text
    assert "It may be called from 23 Nov 2026, 13:00:00 UTC (Monday 08:00 in New York)" in text
    assert await page.locator("#number-result li.reason.fail").count() == 1
    rules = await page.text_content("#number-result details.rules pre") or ""
    assert "America/New_York" in rules
    await console.shot("number")

    await page.fill("#number-form input[name=number]", AU)
    await page.fill("#number-form input[name=at]", "")
    await page.click("#number-form button[type=submit]")
    await page.wait_for_selector(f"#number-result .answer.allow:has-text('{AU} may be called now')")

    await page.fill("#number-form input[name=number]", "not a number")
    await page.click("#number-form button[type=submit]")
    await page.wait_for_selector("#number-error:has-text('Not a phone number')")


async def test_a_supervisor_has_no_write_action_an_admin_has_one(console: Console) -> None:
    gw = console.gateway
    page = console.page
    number = au(5)
    await console.sign_in("supervisor")
    await console.open(f"#/number?n={number}")
    await page.wait_for_selector("#number-result .answer.allow")
    assert await page.locator("#number-result button.danger").count() == 0
    assert await page.locator("button:has-text('do-not-call list')").count() == 0
    await console.shot("read-only")

    await page.click("#sign-out")
    await console.sign_in("admin")
    await console.open(f"#/number?n={number}")
    await page.wait_for_selector("#number-result .answer.allow")
    await page.click("#number-result button:has-text('Put on the internal do-not-call list')")
    await page.fill("#number-result form.confirm input[name=note]", "asked us to stop")
    await page.click("#number-result form.confirm button[type=submit]")
    await page.wait_for_selector(
        f"#number-result .status:has-text('{number} is on the internal do-not-call list')"
    )
    await page.wait_for_selector("#number-result .answer.block li:has-text('internal do-not-call list')")
    entries = await gw.api("GET", "/v1/dnc?list=internal&limit=100", role="supervisor")
    assert any(e["number"] == number and e["source"] == "supervisor_console" for e in entries["entries"])


async def test_lists_show_their_age_against_the_31_day_rule(console: Console) -> None:
    gw = console.gateway
    today = datetime.now(UTC).date()  # the browser's clock is this process's (faketime moves both)
    for name, age in (("fresh_list", 10), ("us_national", 27), ("uk_tps", 40)):
        day = (today - timedelta(days=age)).isoformat()
        await gw.api(
            "POST", f"/v1/dnc/imports?list={name}&format=us-registry&date={day}",
            data=b"2125550100\n2125550101\n", headers={"Content-Type": "text/plain"},
        )  # fmt: skip
    await console.sign_in()
    page = console.page
    await page.click("nav a[data-view=lists]")
    await page.wait_for_selector("#lists-body tr[data-list=uk_tps]")
    fresh = await page.text_content("#lists-body tr[data-list=fresh_list] td.fresh") or ""
    aging = await page.text_content("#lists-body tr[data-list=us_national] td.fresh") or ""
    stale = await page.text_content("#lists-body tr[data-list=uk_tps] td.fresh") or ""
    assert fresh.startswith("✓ Fresh: 10 days old")
    assert aging.startswith("⚠ Import a fresh copy soon: 27 days old") and "in 4 days" in aging
    assert stale.startswith("✗ Stale: 40 days old") and "dnc.list_stale" in stale
    named = await page.text_content("#lists-body tr[data-list=uk_tps] th") or ""
    assert "Telephone Preference Service" in named
    size = await page.text_content("#lists-body tr[data-list=fresh_list] td.count") or ""
    assert size == "2"
    await console.shot("lists")


async def test_campaigns_chart_counts_and_its_csv_export(console: Console, tmp_path: Path) -> None:
    gw = console.gateway
    name = await campaign(gw, "chart")
    await gw.api("POST", "/v1/dnc", json={"number": au(6)})
    for n in (7, 8, 9):
        await check(gw, au(n), name)
    await check(gw, au(6), name)
    await console.sign_in()
    page = console.page
    await page.click("nav a[data-view=campaigns]")
    await page.select_option("#camp-form select[name=campaign]", name)
    await page.click("#camp-form button[type=submit]")
    await page.wait_for_selector("#camp-chart table.chart tr[data-code='dnc.internal']")
    summary = await page.text_content("#camp-chart .summary") or ""
    assert "4 decisions, 3 allowed (75.0 %), 1 blocked (25.0 %)" in summary
    allowed_bar = await page.get_attribute("#camp-chart tr[data-code=ok] rect.fill", "width")
    blocked_bar = await page.get_attribute("#camp-chart tr[data-code='dnc.internal'] rect.fill", "width")
    assert (allowed_bar, blocked_bar) == ("300", "100")
    await console.shot("campaigns")

    async with page.expect_download() as waiting:
        await page.click("#camp-csv")
    download = await waiting.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0] == "since,until,campaign,verdict,reason,count"
    assert sorted(line.split(",", 2)[2] for line in lines[1:]) == [
        f"{name},ALLOW,ok,3",
        f"{name},BLOCK,dnc.internal,1",
    ]


async def test_the_log_exports_its_filter_as_csv(console: Console, tmp_path: Path) -> None:
    gw = console.gateway
    needs(gw, "decisions")
    name = await campaign(gw, "csv-export")
    made = [await check(gw, au(n), name) for n in (10, 11)]
    await console.sign_in()
    page = console.page
    await page.select_option("#live-filters select[name=campaign]", name)
    await page.click("#live-filters button[type=submit]")
    async with page.expect_download() as waiting:
        await page.click("#live-csv")
    download = await waiting.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0].startswith("decided_at,call_id,number,campaign,verdict,reason")
    assert sorted(line.split(",")[1] for line in lines[1:]) == sorted(d["call_id"] for d in made)


async def test_an_evidence_bundle_downloads(console: Console, tmp_path: Path) -> None:
    gw = console.gateway
    needs(gw, "evidence")
    await console.sign_in()
    page = console.page
    await console.open(f"#/number?n={AU}")
    await page.wait_for_selector("#number-result .answer")
    async with page.expect_download() as waiting:
        await page.click("#number-result button:has-text('evidence bundle')")
    download = await waiting.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert saved.stat().st_size > 0
    await page.wait_for_selector("#number-result .status:has-text('Downloaded')")


async def test_keyboard_alone_reaches_a_number(console: Console) -> None:
    page = console.page
    await console.open()
    await page.wait_for_selector("#token:focus")  # the sign-in form takes the focus
    await page.keyboard.type(console.gateway.tokens["supervisor"])
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#live-h:focus")  # the view's heading
    for _ in range(12):  # from the view's heading back up: Sign out, then the last view's link
        await page.keyboard.press("Shift+Tab")
        if await page.evaluate("document.activeElement.textContent") == "A number":
            break
    else:
        pytest.fail("Shift+Tab never reached the 'A number' link")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#number-h:focus")  # the view's heading, so Tab goes on from there
    await page.keyboard.press("Tab")
    await page.keyboard.type(AU)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#number-result .answer.allow")


@pytest.mark.viewport(820, 1180)
async def test_a_tablet_width_fits(console: Console) -> None:
    """An iPad Air's portrait width: every view fits without scrolling sideways (shot() checks)."""
    page = console.page
    await console.sign_in()
    await console.shot("tablet-live")
    await console.open(f"#/number?n={AU}")
    await page.wait_for_selector("#number-result .answer")
    await console.shot("tablet-number")
    await page.click("nav a[data-view=campaigns]")
    await page.wait_for_selector("#camp-chart .summary, #camp-chart .error")
    await console.shot("tablet-campaigns")


async def test_the_log_keeps_up_with_a_thousand_decisions_a_second(console: Console) -> None:
    """Three seconds of 1,000 decisions a second, as the event stream delivers them (text through the
    page's SSE parser into the log): the page keeps drawing, its timers stay on time, the table stays
    capped, and the newest decision is on top."""
    await console.sign_in()
    page = console.page
    await page.wait_for_selector("#live-state")
    stress = (Path(__file__).parent / "stress.js").read_text()
    figures = await page.evaluate(stress, {"seconds": 3, "rate": 1000})
    print(f"\n1,000 decisions/s in the live log: {figures}")
    assert figures["sent"] == 3000
    assert figures["rows"] == figures["cap"]
    assert figures["top"].endswith(f"{2999:012d}")
    assert figures["fps"] > 20, figures  # still drawing
    assert figures["maxLagMs"] < 250, figures  # a click is answered within a quarter second
    started = time.monotonic()
    await page.click("#live-pause")
    assert await page.get_attribute("#live-pause", "aria-pressed") == "true"
    assert time.monotonic() - started < 1.0
    # Paused: what arrives is counted and held, not drawn; resumed, the newest is on top.
    await page.evaluate(
        """async () => {
          const live = await import('/static/live.js');
          for (let n = 3000; n < 3010; n += 1) {
            live.ingest({ call_id: `held-${n}`, number: '+61212345678', campaign: 'load', verdict: 'ALLOW',
                          reason: 'ok', reasons: [], decided_at: new Date().toISOString() });
          }
        }"""
    )
    await page.wait_for_selector("#live-counts:has-text('10 new waiting')")
    assert await page.get_attribute("#live-rows tr:first-child", "data-call-id") == figures["top"]
    await page.click("#live-pause")
    await page.wait_for_selector("#live-rows tr:first-child[data-call-id='held-3009']")
    assert await page.locator("#live-rows tr").count() == figures["cap"]


async def test_the_page_is_one_origin_with_a_strict_policy(gateway: Gateway) -> None:
    """No inline script, nothing from elsewhere, and the headers that say so."""
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.base + "/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            policy = response.headers["Content-Security-Policy"]
            html = await response.text()
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["Cache-Control"] == "no-store"
        async with http.get(gateway.base + "/static/main.js") as script:
            assert script.status == 200 and script.content_type == "text/javascript"
        for path in ("/static/nothing.js", "/static/..%2Fapi.py", "/static/"):
            async with http.get(gateway.base + path) as missing:
                assert missing.status == 404, path
                assert (await missing.json())["error_id"] == "not_found"
    assert "<script>" not in html and "style=" not in html and "onclick" not in html


def test_the_console_files_name_nothing_outside_the_gateway() -> None:
    static = Path(__file__).resolve().parents[2] / "src" / "dialguard" / "web" / "static"
    for path in static.iterdir():
        text = path.read_text()
        for found in ("http://", "https://", "//fonts.", "cdn"):
            rest = text.replace("http://www.w3.org/2000/svg", "")
            assert found not in rest, (path.name, found)
