"""Helpers shared by the browser tests: a page that records what went wrong, and the UI's
own controls driven the way a person would (settings dialog, composer)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

ANSWER_TIMEOUT_MS = 60_000


@dataclass
class Watched:
    """A page with its console errors, uncaught exceptions and dialogs (alert, confirm)."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, context: Any) -> "Watched":
        watched = cls(context.new_page())
        page = watched.page
        page.set_default_timeout(60_000)  # generous: the machine may be shared and busy
        page.on("console", lambda m: watched.errors.append(f"{m.text} [{m.location.get('url')}]")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: watched.errors.append(f"uncaught: {e}"))

        def on_dialog(dialog: Any) -> None:
            watched.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        return watched


def wait_ready(page: Any) -> None:
    """The page has found the server ready and read its properties (/v1/models, /props)."""
    page.wait_for_selector("html[data-server=ready]", timeout=30_000)


def configure(page: Any, **values: str) -> None:
    """Fill the settings dialog as a user would (field name -> text) and close it."""
    page.click("#open-settings")
    dialog = page.locator("#settings-dialog")
    dialog.wait_for(state="visible")
    for name, value in values.items():
        target = dialog.locator(f"[name={name}]")
        if name == "constraint":
            target.select_option(value)
        else:
            target.fill(value)
    dialog.get_by_role("button", name="Done").click()
    dialog.wait_for(state="hidden")


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def wait_answer_done(page: Any) -> None:
    """The answer being streamed has ended (the send button is back)."""
    page.wait_for_selector("#send:not([hidden])", timeout=ANSWER_TIMEOUT_MS)


def last_answer(page: Any) -> Any:
    return page.locator("#messages .message.assistant").last


def request_json(request: Any) -> dict[str, Any]:
    return json.loads(request.post_data or "{}")


def health(url: str) -> dict[str, Any]:
    return httpx.get(url + "/health", timeout=10).json()
