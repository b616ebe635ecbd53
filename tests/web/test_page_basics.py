"""The page's own pieces in the browser: how it is served, where it finds the services, GitHub sign-in through
auth's redirects, the token refreshed before it expires, and the Markdown renderer's safety."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import WebStack, shot
from tests.web.pages import sign_in, token


def test_bridge_serves_the_page_and_its_config(web_stack: WebStack) -> None:
    with httpx.Client(base_url=web_stack.url, timeout=10, trust_env=False) as client:
        index = client.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert index.headers["cache-control"] == "no-cache" and index.headers["x-content-type-options"] == "nosniff"
        assert "Content-Security-Policy" in index.text and '<script type="module" src="app.js">' in index.text
        script = client.get("/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert client.get("/config.json").json() == {
            "auth_url": web_stack.api.auth.url,
            "api_url": web_stack.api.stack.api_url,
        }
        missing = client.get("/no-such-file.js")
        assert missing.status_code == 404
        assert client.get("/health/ready").status_code == 200  # the page's routes do not shadow the bridge's


def test_discovery_from_the_host_name_where_no_config_json_is_served(web_stack: WebStack, page: Any) -> None:
    """Staging serves the page from a bucket behind app.<domain>: the services are auth./api./ws.<domain>."""
    page.goto(web_stack.url)
    # Answered inside the browser: nothing leaves this machine.
    page.route(
        "https://app.staging.example.com/**",
        lambda route: route.fulfill(status=404, body="<html>not found</html>", content_type="text/html"),
    )
    urls = page.evaluate("""async () => (await import('/api.js')).discover({protocol: 'https:',
        host: 'app.staging.example.com', hostname: 'app.staging.example.com',
        href: 'https://app.staging.example.com/'})""")
    assert urls == {
        "authUrl": "https://auth.staging.example.com",
        "apiUrl": "https://api.staging.example.com",
        "wsUrl": "wss://ws.staging.example.com/ws",
    }


def test_github_sign_in_through_auth_and_back(web_stack: WebStack, page: Any) -> None:
    """The provider button: /auth/login (PKCE S256) -> the provider -> /auth/callback -> the page with a one-time
    code -> POST /auth/token with the verifier. The code does not stay in the address bar."""
    page.goto(web_stack.url)
    button = page.get_by_role("button", name="Sign in with GitHub")
    button.click()
    page.get_by_text("octocat@example.com").wait_for()
    page.locator("#connection[data-state=connected]").wait_for()
    assert "code=" not in page.url and page.url == web_stack.url
    assert page.evaluate("sessionStorage.getItem('netra.pkce_verifier')") is None
    me = httpx.get(f"{web_stack.api.auth.url}/auth/me", headers={"Authorization": f"Bearer {token(page)}"}).json()
    assert [i["provider"] for i in me["identities"]] == ["github"]


def test_token_refreshed_before_expiry_and_the_socket_extended(web_stack: WebStack, page: Any) -> None:
    """A minute before the access token expires the page refreshes it (POST /auth/refresh), sends it to the bridge
    as an `auth` frame (answered `auth_ok`) and keeps the same connection; the API takes the new token."""
    page.clock.install()
    sign_in(page, web_stack.url)
    first = token(page)
    ttl = page.evaluate("window.netra.session.config.access_token_ttl_s")
    with page.expect_request(lambda r: r.url.endswith("/auth/refresh")):
        page.clock.fast_forward((ttl - 1) * 1000)  # fires each due timer once: the refresh is one of them
    page.locator("body[data-token-refreshes='1']").wait_for()
    assert token(page) != first
    assert page.evaluate("window.netra.socket.connections") == 1
    assert page.evaluate("window.netra.api.usageSummary().then(s => s.records)") == 0


XSS = """## Title with <em>markup</em>

<img src=x onerror="window.pwned=1"> and <script>window.pwned=1</script>

| Model | Cost |
|---|---:|
| `gpt-4o` <b>bold?</b> | $5.20 |
| a \\| b | **$1.00** |

- [safe](https://example.com/docs) link
- [unsafe](javascript:window.pwned=1) link
- *emphasis* and _more_ and snake_case_name

```html
<iframe src="https://example.com"></iframe>
```

| unfinished | table |
|---"""


def test_markdown_renderer_builds_elements_never_html(web_stack: WebStack, page: Any) -> None:
    page.goto(web_stack.url)
    result = page.evaluate(
        """async (text) => {
        const { render } = await import('/markdown.js');
        const box = document.createElement('div');
        box.append(render(text));
        document.body.append(box);
        const all = (s) => [...box.querySelectorAll(s)];
        return {
            forbidden: all('img, script, iframe, b, em.markup').length + (window.pwned ? 1 : 0),
            heading: all('h3').map(e => e.textContent),
            cells: all('table')[0] ? all('table')[0].querySelectorAll('td').length : 0,
            firstCell: box.querySelector('td').textContent,
            pipe: box.querySelectorAll('td')[2].textContent,
            rightAligned: box.querySelectorAll('td')[1].style.textAlign,
            strong: all('td strong').map(e => e.textContent),
            links: all('a').map(e => [e.textContent, e.getAttribute('href'), e.rel]),
            items: all('ul li').length,
            em: all('li em').map(e => e.textContent),
            code: all('pre code').map(e => e.textContent),
            text: box.textContent,
            tables: all('table').length,
        };
    }""",
        XSS,
    )
    assert result["forbidden"] == 0
    assert result["heading"] == ["Title with <em>markup</em>"]
    assert '<img src=x onerror="window.pwned=1">' in result["text"] and "<script>" in result["text"]
    assert result["cells"] == 4 and result["firstCell"] == "gpt-4o <b>bold?</b>" and result["pipe"] == "a | b"
    assert result["rightAligned"] == "right" and result["strong"] == ["$1.00"]
    assert result["links"] == [["safe", "https://example.com/docs", "noopener noreferrer"]]
    assert result["items"] == 3 and result["em"] == ["emphasis", "more"] and "snake_case_name" in result["text"]
    assert result["code"] == ['<iframe src="https://example.com"></iframe>']
    assert result["tables"] == 2  # the streamed, unfinished table renders as far as it goes
    shot(page, "09-markdown-safety")


def test_large_file_goes_in_parts_and_a_bad_file_says_what_is_wrong(
    web_stack: WebStack, page: Any, tmp_path: Path
) -> None:
    """A JSONL file over the API's 1 MiB body limit is sent as parts at line boundaries; every row arrives once.
    A file with a broken row is refused whole, and the page names the row and the field."""
    from functions.agent.usage.generate import generate

    sign_in(page, web_stack.url)
    rows = list(generate("support_chatbot", days=1, requests_per_day=4000, seed=3, start=date(2025, 9, 1)))
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert big.stat().st_size > 1_100_000
    with page.expect_request(lambda r: "/api/usage?part=2" in r.url):
        page.get_by_label("Upload a usage file (JSONL, JSON or CSV)").set_input_files(str(big))
    page.locator("#upload-status[data-rows-inserted]").wait_for()
    assert page.locator("#upload-status").text_content() == "Uploaded big.jsonl: 4,000 new rows."
    page.get_by_text("4,000 records, 2025-09-01 to 2025-09-01").wait_for()

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "request_id,timestamp,model,input_tokens,output_tokens\nr1,2025-09-01T00:00:00Z,gpt-4o,10,5\n"
        "r2,2025-09-01T00:01:00Z,gpt-4o,lots,5\n"
    )
    page.get_by_label("Upload a usage file (JSONL, JSON or CSV)").set_input_files(str(bad))
    page.locator("#upload-status[data-rows-inserted='0']").wait_for()
    status = page.locator("#upload-status").text_content()
    assert status.startswith("Upload failed: 1 problem(s) in 2 row(s); nothing was stored."), status
    assert "row 2, input_tokens" in status, status


def test_sign_out_ends_the_session(web_stack: WebStack, page: Any) -> None:
    sign_in(page, web_stack.url)
    refresh_token = page.evaluate("sessionStorage.getItem('netra.refresh_token')")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    assert page.locator("#connection-text").text_content() == "Not connected"
    assert page.evaluate("sessionStorage.getItem('netra.refresh_token')") is None
    refused = httpx.post(f"{web_stack.api.auth.url}/auth/refresh", json={"refresh_token": refresh_token})
    assert refused.status_code == 401


def test_phone_width_dark_mode_and_keyboard_only_sign_in(web_stack: WebStack, browser: Any) -> None:
    """At 390 px in dark mode a keyboard alone signs in (Tab to the field, type, Enter); the conversation comes
    first and the data panel waits behind its summary; nothing is wider than the screen."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(web_stack.url)
        page.get_by_role("heading", name="Sign in").wait_for()
        for _ in range(8):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "dev-email":
                break
        assert page.evaluate("document.activeElement.id") == "dev-email"
        page.keyboard.press("Control+A")
        page.keyboard.type("phone@example.com")
        page.keyboard.press("Enter")
        page.get_by_text("phone@example.com").wait_for()
        page.locator("#connection[data-state=connected]").wait_for()
        assert page.evaluate("document.getElementById('data-panel').open") is False
        assert page.get_by_label("Message").is_visible()
        expect(page.get_by_label("Message")).to_be_focused()  # signed in: ready to type
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(18, 21, 26)"  # the dark scheme's --bg
        shot(page, "10-phone-dark-signed-in")
    finally:
        context.close()


def test_live_ingestion_panel_creates_shows_and_revokes_keys(web_stack: WebStack, page: Any) -> None:
    """Issue 19: the data panel creates an ingest key (shown once), lists it with its last use, shows the last
    ingested record's time and the per-source counts, and revokes it (the key is then refused)."""
    from tests.ingest.otlp_payloads import chat_attrs, request, span

    sign_in(page, web_stack.url)
    page.get_by_label("Key name").fill("prod collector")
    page.get_by_role("button", name="Create key").click()
    shown = page.locator("#ingest-new-key")
    shown.wait_for()
    key = shown.text_content() or ""
    assert key.startswith("nik_")
    assert page.locator("#ingest-otlp-url").text_content() == f"{web_stack.api.stack.api_url}/v1/traces"
    page.get_by_text("prod collector (nik_").wait_for()
    assert page.get_by_text("last used never").count() == 1

    otlp = f"{web_stack.api.stack.api_url}/v1/traces"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
    body = request([span(chat_attrs()), span(chat_attrs()), span({"http.route": "/x"})]).SerializeToString()
    assert httpx.post(otlp, content=body, headers=headers, trust_env=False).status_code == 200
    page.reload()
    page.locator("#ingest-sources[data-last-ingested-at^='20']").wait_for()
    sources = page.locator("#ingest-sources").text_content() or ""
    assert "OpenTelemetry: 2 records (1 other span ignored)" in sources, sources
    assert page.get_by_text("last used never").count() == 0
    shot(page, "ingest-panel")

    page.get_by_role("button", name="Revoke prod collector").click()
    page.locator("#ingest-keys li[data-active='false']").wait_for()
    assert httpx.post(otlp, content=body, headers=headers, trust_env=False).status_code == 401
