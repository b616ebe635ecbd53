"""What the web tests do on the page, as a person would: sign in, upload, ask; and what they read back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.intelligence import datasets


def sign_in(page: Any, url: str, email: str | None = None) -> str:
    """Dev sign-in through the form; returns the email used."""
    email = email or f"web-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(url)
    page.get_by_label("Email (development sign-in)").fill(email)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_text(email).wait_for()
    page.locator("#connection[data-state=connected]").wait_for()
    return email


def upload_dataset_a(page: Any, tmp_path: Path) -> None:
    """Reference dataset A of the intelligence tests (41 rows, priced by hand in tests/intelligence)."""
    path = tmp_path / "usage.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in datasets.dataset_a()))
    page.get_by_label("Upload a usage file (JSONL, JSON or CSV)").set_input_files(str(path))
    page.locator("#upload-status[data-rows-inserted]").wait_for()


def ask(page: Any, question: str) -> None:
    box = page.get_by_label("Message")
    box.fill(question)
    box.press("Enter")


def token(page: Any) -> str:
    return str(page.evaluate("window.netra.session.accessToken"))


def run_rows(page: Any, run_id: str | None = None) -> list[dict[str, Any]]:
    """The event rows the page shows for a run (the last run when none is named), in DOM order."""
    selector = f"article.run[data-run-id='{run_id}']" if run_id else "article.run >> nth=-1"
    return (
        page.locator(selector)
        .locator("li.event")
        .evaluate_all(
            "items => items.map(li => ({seq: Number(li.dataset.seq), type: li.dataset.type, agent: li.dataset.agent,"
            " text: li.querySelector('.what').textContent}))"
        )
    )


def last_run_id(page: Any) -> str:
    return str(page.locator("article.run").last.get_attribute("data-run-id"))
