"""Headless Chromium (Debian's, never a downloaded one) with fake camera and microphone."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from live.site import CHROMIUM, CHROMIUM_ARGS, Booking, Site, require
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

TIMEOUT_MS = 15_000


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    require(CHROMIUM, "Chromium")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Side:
    context: BrowserContext
    page: Page

    async def state(self) -> dict[str, Any]:
        return await self.page.evaluate("() => JSON.parse(JSON.stringify(window.confide))")  # type: ignore[no-any-return]

    async def wait(self, condition: str, timeout: float = TIMEOUT_MS) -> None:
        """Wait until `condition`, a JS expression on `c` (= window.confide), holds."""
        try:
            await self.page.wait_for_function(f"() => {{ const c = window.confide; "
                                              f"return !!c && ({condition}); }}",
                                              timeout=timeout)
        except PlaywrightTimeout:
            raise AssertionError(f"{condition!r} never held: {await self.state()}") from None


def page_url(site: Site, booking: Booking, user: str, role: str, relay: bool) -> str:
    token = site.node.token(user, role)
    return (f"{site.node.url}/live/{booking.session}" + ("?relay=1" if relay else "")
            + f"#token={token}")


async def open_side(browser: Browser, url: str) -> Side:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(url)
    return Side(context, page)


@contextlib.asynccontextmanager
async def both_sides(browser: Browser, site: Site, booking: Booking, relay: bool = False
                     ) -> AsyncIterator[tuple[Side, Side]]:
    """The client's page (joins first and waits), then the provider's page."""
    sides: list[Side] = []
    try:
        client = await open_side(browser, page_url(site, booking, booking.client, "client",
                                                   relay))
        sides.append(client)
        await client.wait("c.phase === 'waiting'")
        provider = await open_side(browser, page_url(site, booking, booking.provider,
                                                     "provider", relay))
        sides.append(provider)
        yield client, provider
    finally:
        for side in sides:
            await side.context.close()


async def join_to_connected_ms(client: Side, provider: Side) -> float:
    """From the first `live.start` arrival to the later of the two 'connected' (page clocks)."""
    try:
        await client.wait("c.connectionState === 'connected'")
        await provider.wait("c.connectionState === 'connected'")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nprovider: {await provider.state()}") from None
    a, b = await client.state(), await provider.state()
    return float(max(a["connectedAt"], b["connectedAt"]) - min(a["startAt"], b["startAt"]))
