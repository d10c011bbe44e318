"""Headless Chromium driven by selenium, as the browser tests use it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


@contextmanager
def chromium() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="herald-ui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=DriverService(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def boxes(driver: Any, kind: str) -> dict[str, dict[str, str]]:
    """The map's boxes of a kind: key -> state and class (read at once: the map redraws)."""
    found: dict[str, dict[str, str]] = driver.execute_script(
        "const found = {};"
        "for (const b of document.querySelectorAll(`#map g.box[data-kind='${arguments[0]}']`))"
        "  found[b.dataset.key] = {state: b.dataset.state || '', class: b.getAttribute('class')};"
        "return found;",
        kind,
    )
    return found


def click_box(driver: Any, kind: str, key: str) -> None:
    driver.execute_script(
        "document.querySelector(`#map g.box[data-kind='${arguments[0]}'][data-key='${arguments[1]}']`)"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true}));",
        kind, key,
    )  # fmt: skip


def edge_count(driver: Any, kind: str, source: str, target: str) -> int:
    return int(
        driver.execute_script(
            "const e = document.querySelector("
            "`#map path.edge[data-kind='${arguments[0]}'][data-from='${arguments[1]}']"
            "[data-to='${arguments[2]}']`); return e ? e.dataset.count : -1;",
            kind, source, target,
        )
    )  # fmt: skip


def tab(driver: Any, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#tabs button[data-tab="{name}"]').click()


def shoot(driver: Any, name: str, directory: Path) -> None:
    target = Path(os.environ.get("HERALD_UI_SHOTS", directory))
    target.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(target / name))
