"""The desk in real headless Chromium: keyboard only, accessible names, focus order,
contrast, layouts from laptop to tablet, and offers arriving live over the work stream."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from threadline.api.deps import service_of
from threadline.core.events import Actor, Event

DOCS = Path(__file__).resolve().parent.parent / "docs"
MAYA = Actor("customer", "cus-maya")
FORM_ROLES = {"button", "textbox", "combobox", "listbox", "checkbox", "radio", "link", "slider"}

# Colour contrast (WCAG 2.x relative luminance) of every visible text and form control
# against the background it is painted on; returns the ones under AA.
CONTRAST_JS = """() => {
  const parse = (c) => { const p = c.match(/rgba?\\(([^)]+)\\)/)[1].split(',').map(parseFloat);
                         return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = (c) => { const f = (v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const behind = (el) => { for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor); if (c.a > 0) return c; }
    return {r: 255, g: 255, b: 255, a: 1}; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
                            return (x + 0.05) / (y + 0.05); };
  const shown = (el) => el.getClientRects().length > 0 && !el.closest('[hidden]')
    && getComputedStyle(el).visibility !== 'hidden';
  const bad = [];
  const check = (el, text) => {
    const cs = getComputedStyle(el);
    const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const r = ratio(parse(cs.color), behind(el));
    if (r < need) bad.push({text: text.slice(0, 40), ratio: +r.toFixed(2), color: cs.color});
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, el = node.parentElement;
    if (!node.textContent.trim() || el.closest('option, select, :disabled') || !shown(el)) continue;
    check(el, node.textContent.trim());
  }
  for (const el of document.querySelectorAll('select:enabled, textarea, input')) {
    if (shown(el)) check(el, el.id);
  }
  return bad;
}"""

# What has focus, and whether its focus ring is visible: an outline of 2px or more
# whose colour stands out 3:1 against what is around the element.
FOCUSED_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const parse = (c) => { const p = c.match(/rgba?\\(([^)]+)\\)/)[1].split(',').map(parseFloat);
                         return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = (c) => { const f = (v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  let around = {r: 255, g: 255, b: 255};
  for (let e = el.parentElement; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor); if (c.a > 0) { around = c; break; } }
  const cs = getComputedStyle(el);
  const [x, y] = [lum(parse(cs.outlineColor)), lum(around)].sort((p, q) => q - p);
  return {
    id: el.id || el.dataset.role || el.className || el.tagName.toLowerCase(),
    name: el.getAttribute('aria-label') || el.textContent.trim().slice(0, 40),
    ring: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2,
    contrast: +((x + 0.05) / (y + 0.05)).toFixed(2),
  };
}"""

OVERFLOW_JS = "() => document.scrollingElement.scrollWidth <= window.innerWidth"


def agent_token(app, subject: str = "agent-ana", queues: tuple[str, ...] = ("orders", "billing")):
    tokens = service_of(app).tokens
    issued = tokens.issue(subject, ["agent"], timedelta(hours=1), {"queues": queues})
    return str(issued.token)


async def make_available(server, token: str) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.put("/agents/me/presence", json={"presence": "available"},
                                  headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status_code == 200, response.text


async def asks_for_a_person(app, cid: str) -> None:
    """Maya chats about order 1042 and asks for a person; the bot hands off to orders."""
    said = [("My order 1042 is late", "late"), ("I want to talk to a person", "ask")]
    events = [
        Event(cid, "conversation.started", {"origin": "chat"}, channel="chat", actor=MAYA,
              customer_id="cus-maya", idempotency_key=f"{cid}-start"),
        Event(cid, "leg.started", {"leg_id": f"{cid}-chat", "channel": "chat"}, channel="chat",
              leg_id=f"{cid}-chat", actor=MAYA, customer_id="cus-maya",
              idempotency_key=f"{cid}-leg"),
        *[Event(cid, "message.received", {"text": text}, channel="chat", leg_id=f"{cid}-chat",
                actor=MAYA, customer_id="cus-maya", idempotency_key=f"{cid}-{key}")
          for text, key in said],
    ]  # fmt: skip
    for event in events:
        await service_of(app).conversations.record(cid, [event])


async def open_desk(browser, server, token: str, viewport: tuple[int, int]) -> tuple[Any, Page]:
    context = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = await context.new_page()
    await page.goto(f"{server.http}/desk#token={token}")
    await expect(page.locator("#me-name")).to_contain_text("Ana Ruiz")
    await expect(page.get_by_role("status").first).to_have_text("Live")
    return context, page


async def tab_to(page: Page, selector: str, limit: int = 30) -> list[dict[str, Any]]:
    """Press Tab until ``selector`` has focus; what had focus on the way, in order."""
    target = page.locator(selector)
    path = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED_JS)
        path.append(focused)
        if await target.evaluate("el => el === document.activeElement"):
            return path
    raise AssertionError(f"{selector} never got focus; went {[p and p['id'] for p in path]}")


async def test_an_agent_accepts_replies_and_resolves_with_the_keyboard_only(
    live_server, browser
) -> None:
    app = live_server.app
    token = agent_token(app)
    await make_available(live_server, token)
    context, page = await open_desk(browser, live_server, token, (1280, 800))
    polled: list[str] = []
    page.on("request", lambda r: polled.append(r.url) if "/agents/me/offers" in r.url else None)

    await asks_for_a_person(app, "conv-keys")
    accept = page.get_by_role("button", name=re.compile("^Accept offer from queue orders"))
    await expect(accept).to_be_visible(timeout=10_000)  # live, no reload
    await expect(page.locator("#offers")).to_contain_text("order number 1042")

    await tab_to(page, "#offers button[data-role=accept]")
    await page.keyboard.press("Enter")
    await expect(page.locator("#reply-text")).to_be_focused()
    await expect(page.locator("#mine")).to_contain_text("cus-maya")
    await expect(page.locator("#no-offers")).to_be_visible()

    await page.keyboard.type("Hi Maya, this is Ana. I can help.")
    await page.keyboard.press("Enter")
    await expect(page.locator("#timeline")).to_contain_text("this is Ana", timeout=10_000)
    await expect(page.locator("#reply-text")).to_have_value("")

    await tab_to(page, "#outcome", limit=6)
    await page.keyboard.press("ArrowDown")
    await expect(page.locator("#outcome")).to_have_value("replacement_arranged")
    await tab_to(page, "#resolve", limit=1)
    await page.keyboard.press("Space")
    await expect(page.locator("#conv-status")).to_contain_text("resolved", timeout=10_000)
    await expect(page.locator("#conv-title")).to_be_focused()
    await expect(page.locator("#no-mine")).to_be_visible()

    state = await service_of(app).conversations.rehydrate("conv-keys")
    assert state.status == "resolved" and state.outcome == "replacement_arranged"
    sent = [r for r in await service_of(app).store.read("conv-keys") if r.type == "message.sent"]
    assert any(r.actor_id == "agent-ana" for r in sent)
    assert polled == []  # the desk no longer polls for offers
    await context.close()


async def test_every_control_is_named_focus_moves_in_reading_order_and_text_has_contrast(
    live_server, browser
) -> None:
    app = live_server.app
    token = agent_token(app)
    await make_available(live_server, token)
    await asks_for_a_person(app, "conv-held")
    context, page = await open_desk(browser, live_server, token, (1280, 800))
    await page.get_by_role("button", name=re.compile("^Accept offer")).click()
    await expect(page.locator("#mine button")).to_have_count(1)
    await asks_for_a_person(app, "conv-offered")  # a second one, offered while she works
    await expect(page.locator("#offers li")).to_have_count(1, timeout=10_000)
    await expect(page.locator("#timeline li").first).to_be_visible()

    cdp = await context.new_cdp_session(page)
    tree = await cdp.send("Accessibility.getFullAXTree")
    controls = [
        n for n in tree["nodes"]
        if not n.get("ignored") and n.get("role", {}).get("value") in FORM_ROLES
    ]  # fmt: skip
    assert len(controls) >= 12
    unnamed = [n["role"]["value"] for n in controls if not n.get("name", {}).get("value")]
    assert unnamed == []
    unlabelled = await page.evaluate("""() => [...document.querySelectorAll(
        'input, select, textarea')].filter(el => !el.labels.length).map(el => el.id)""")
    assert unlabelled == []

    await page.locator(".skip").focus()  # the first stop, as on a fresh load
    path = [await page.evaluate(FOCUSED_JS), *await tab_to(page, "#resolve", limit=20)]
    assert [step["id"] for step in path] == [
        "skip", "presence", "accept", "decline", "open", "timeline", "reply-text", "send",
        "transfer-queue", "transfer", "return", "outcome", "resolve",
    ]  # fmt: skip
    names = [step["name"] for step in path]
    assert names[2].startswith("Accept offer from queue orders")
    assert names[3].startswith("Decline offer from queue orders")
    without_ring = [(s["id"], s["contrast"]) for s in path if not s["ring"] or s["contrast"] < 3]
    assert without_ring == []
    assert await page.evaluate(CONTRAST_JS) == []
    await context.close()


@pytest.mark.parametrize("viewport", [(1280, 800), (820, 1180), (1180, 820)])
async def test_the_desk_fits_laptops_and_tablets_without_sideways_scrolling(
    live_server, browser, viewport
) -> None:
    app = live_server.app
    token = agent_token(app)
    await make_available(live_server, token)
    await asks_for_a_person(app, "conv-fit")
    context, page = await open_desk(browser, live_server, token, viewport)
    await page.get_by_role("button", name=re.compile("^Accept offer")).click()
    await expect(page.locator("#reply-text")).to_be_focused()
    await expect(page.get_by_role("complementary", name="Context")).to_contain_text("1042")
    await expect(page.locator("#timeline")).to_contain_text("talk to a person")

    assert await page.evaluate(OVERFLOW_JS)
    width, height = viewport
    panes = [page.get_by_role("navigation", name="Work"),
             page.get_by_role("region", name=re.compile("^Conversation")),
             page.get_by_role("complementary", name="Context"),
             page.get_by_label("Reply to the customer"),
             page.get_by_role("button", name="Resolve")]  # fmt: skip
    for pane in panes:
        await expect(pane).to_be_visible()
        box = await pane.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (viewport, box)
        assert box["y"] >= 0 and box["y"] + min(box["height"], 40) <= height, (viewport, box)
    if viewport == (820, 1180):
        DOCS.mkdir(exist_ok=True)
        await page.screenshot(path=str(DOCS / "desk-tablet.png"))
    await context.close()


async def test_a_dropped_work_stream_reconnects_from_its_cursor_and_misses_nothing(
    live_server, browser
) -> None:
    app = live_server.app
    token = agent_token(app)
    await make_available(live_server, token)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    routes: list[Any] = []

    def through(ws) -> None:
        ws.connect_to_server()
        routes.append(ws)

    await page.route_web_socket(re.compile(r".*/agents/me/stream.*"), through)
    await page.goto(f"{live_server.http}/desk#token={token}")
    await expect(page.locator("#connection")).to_have_text("Live")
    await asks_for_a_person(app, "conv-before")
    await expect(page.locator("#offers li")).to_have_count(1, timeout=10_000)

    await routes[0].close(code=1011, reason="network went away")
    await expect(page.locator("#connection")).to_contain_text("Reconnecting")
    await asks_for_a_person(app, "conv-during")  # offered while the desk is away
    await expect(page.locator("#connection")).to_have_text("Live", timeout=10_000)
    await expect(page.locator("#offers li")).to_have_count(2, timeout=10_000)
    assert "after=" not in routes[0].url and re.search(r"after=\d+", routes[-1].url)
    assert len(routes) == 2
    await context.close()
