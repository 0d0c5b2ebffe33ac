"""The page for people, in a real headless Chromium against the real service (slow).

Needs Debian's chromium and chromium-driver (.ci/run installs them). Screenshots go to $PAGE_SCREENSHOTS when set
(docs/screenshots is where the committed ones come from), else to the test's temporary folder."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from ingest.pdf_pages import read_pdf_pages
from rag.config import PdfConfig
from rag.figures import WHY
from rag.store.versions import current_manifest
from tests.conftest import SHORT_PROMPTS, needs_command, start_app

pytestmark = pytest.mark.slow

KEY = "page-key"
APPLE = "What were Apple's total net sales for the quarter ended July 1, 2023?"
AMAZON = "What were Amazon's total net sales for the quarter ended June 30, 2023?"


@pytest.fixture(scope="module")
def service(small_index, tmp_path_factory):
    """The small index (Apple and NVIDIA filings) as a writable collection named filings, behind a key."""
    from ray import serve

    root = tmp_path_factory.mktemp("page")
    shutil.copytree(small_index, root / "index")
    shutil.copytree(current_manifest(small_index).docs_dir, root / "docs")
    overrides = [
        f"serve.collections.filings.index={root / 'index'}",
        f"serve.collections.filings.docs={root / 'docs'}",
        "serve.reload_interval_s=1",
        "llm.max_new_tokens=24",
        SHORT_PROMPTS,
    ]
    os.environ["RAG_API_KEY"] = KEY
    try:
        url = start_app(None, overrides)
    finally:
        del os.environ["RAG_API_KEY"]
    yield url
    serve.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    for command in ("chromium", "chromedriver"):
        needs_command(command, "apt-get install chromium chromium-driver")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


def screenshot(browser, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("PAGE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(folder / f"{name}.png"))


def wait(browser, condition, timeout: float = 180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.3).until(condition)


def open_page(browser, url: str) -> None:
    """Load the page; give the key if it asks (a tab that already has it does not ask again)."""
    from selenium.webdriver.common.by import By

    browser.get(url)
    wait(
        browser,
        lambda b: b.find_element(By.ID, "key").is_displayed() or "filings" in b.find_element(By.ID, "collection").text,
    )
    if browser.find_element(By.ID, "key").is_displayed():
        browser.find_element(By.ID, "key").send_keys(KEY)
        browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait(browser, lambda b: "filings" in b.find_element(By.ID, "collection").text)


def ask(browser, question: str):
    """Type a question and press Enter; returns the answer's list item once its sources are listed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    before = len(browser.find_elements(By.CSS_SELECTOR, "#messages > li.assistant"))
    box = browser.find_element(By.ID, "question")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#messages > li.assistant")) > before)
    item = browser.find_elements(By.CSS_SELECTOR, "#messages > li.assistant")[-1]
    wait(
        browser,
        lambda b: (
            item.find_elements(By.CSS_SELECTOR, ".sources button")
            or "error" in b.find_element(By.ID, "status").get_attribute("class")
        ),
    )
    return item


def test_ask_read_the_source_upload_and_delete(service, browser, sec_docs, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(service)
    # The service wants a key: the page asks for it once and keeps it for this tab.
    key = wait(browser, lambda b: b.find_element(By.ID, "key") if b.find_element(By.ID, "key").is_displayed() else None)
    screenshot(browser, "page-key", tmp_path)
    key.send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait(browser, lambda b: "filings" in b.find_element(By.ID, "collection").text)
    assert browser.execute_script("return localStorage.getItem('rag-key')") is None  # "remember" was not ticked
    assert KEY not in browser.current_url

    # The answer streams in, with its sources under it: the right file and a page that holds the figure.
    item = ask(browser, APPLE)
    pages = read_pdf_pages(sec_docs / "2023 Q3 AAPL.pdf", PdfConfig()).texts
    holding = {i + 1 for i, text in enumerate(pages) if "81,797" in text}
    sources = [b.text for b in item.find_elements(By.CSS_SELECTOR, ".sources button")]
    assert any(s.startswith(f"2023 Q3 AAPL.pdf, p. {p} ") for s in sources for p in holding), sources
    assert "filtered by company=Apple Inc." in item.find_element(By.CSS_SELECTOR, ".applied").text
    assert item.find_element(By.CSS_SELECTOR, ".text").text.strip()

    # A source opens beside the answer: the passage, and the PDF at its page in the browser's own viewer.
    item.find_element(By.CSS_SELECTOR, ".sources button").click()
    frame = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#source iframe"))[0]
    assert "#page=" in frame.get_attribute("src")
    assert browser.find_element(By.CSS_SELECTOR, "#source blockquote").text.strip()
    time.sleep(2)  # the viewer draws the page
    screenshot(browser, "page-desktop", tmp_path)

    # Its figures are marked as the service checked them, and the note under it counts them in words.
    marked = item.find_elements(By.CSS_SELECTOR, ".text .figure")
    assert marked, item.text  # the answer to a question about net sales gives one
    note = item.find_element(By.CSS_SELECTOR, "p.figures").text
    assert f"of {len(marked)} figures found in the sources" in note
    for missing in item.find_elements(By.CSS_SELECTOR, ".text mark.figure.unsupported"):  # says why, in words
        assert missing.get_attribute("title").removeprefix("Not found in the sources: ") in WHY.values()
    supported = item.find_elements(By.CSS_SELECTOR, ".text button.figure.supported")
    if supported:  # a found figure opens its page, with the line that holds it shown above the passage and the PDF
        supported[0].click()
        row = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#source .holding"))[0]
        said = (" stands here: ", " is a period this document reports on: ")  # a line, or its filing's period
        assert any(row.text.startswith(supported[0].text + how) for how in said), row.text
        wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#source iframe"))
        time.sleep(2)  # the viewer draws the page
        screenshot(browser, "page-figure", tmp_path)
    pdf = httpx.get(
        f"{service}/v1/collections/filings/documents/2023%20Q3%20AAPL.pdf/pdf",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"

    # Upload a filing; the page follows the job until the new version is live, and the filing then answers.
    browser.find_element(By.ID, "tab-documents").click()
    browser.find_element(By.ID, "files").send_keys(str(sec_docs / "2023 Q2 AMZN.pdf"))
    wait(browser, lambda b: b.find_element(By.ID, "job").text.startswith("Live: version"), timeout=600)
    # Read in one script: the page redraws the list as the job ends, and elements found before a redraw go stale.
    rows = dict(
        browser.execute_script(
            "return [...document.querySelectorAll('#document-rows tr')]"
            ".map(r => [r.cells[0].innerText, r.cells[1].innerText])"
        )
    )
    assert rows["2023 Q2 AMZN.pdf"] == "indexed"
    screenshot(browser, "page-documents", tmp_path)
    item = ask(browser, AMAZON)
    assert {b.text.split(",")[0] for b in item.find_elements(By.CSS_SELECTOR, ".sources button")} == {
        "2023 Q2 AMZN.pdf"
    }

    # Delete it, after a confirmation; it leaves the list once the new version is live.
    browser.find_element(By.ID, "tab-documents").click()
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Delete 2023 Q2 AMZN.pdf']").click()
    wait(browser, lambda b: b.switch_to.alert).accept()
    wait(
        browser,
        lambda b: (
            b.find_element(By.ID, "job").text.startswith("Live: version")
            and "2023 Q2 AMZN.pdf" not in b.find_element(By.ID, "document-rows").text
        ),
        timeout=600,
    )


def test_stop_cancels_the_answer_and_frees_its_place(service, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(browser, service)
    box = browser.find_element(By.ID, "question")
    box.send_keys("Describe NVIDIA's data center business in detail")
    box.send_keys(Keys.ENTER)
    wait(browser, lambda b: b.find_element(By.ID, "stop").is_enabled())
    browser.find_element(By.ID, "stop").click()
    wait(browser, lambda b: b.find_element(By.ID, "status").text == "Stopped.")
    assert browser.find_elements(By.CSS_SELECTOR, "#messages > li.assistant")[-1].text.endswith("[stopped]")
    deadline = time.monotonic() + 60
    while True:  # the service dropped the request: nothing left running or waiting in the generator
        batching = httpx.get(
            f"{service}/readyz", params={"verbose": "true"}, timeout=30, headers={"Authorization": f"Bearer {KEY}"}
        ).json()["generator"]["batching"]
        if batching["running"] == 0 and batching["waiting"] == 0:
            break
        assert time.monotonic() < deadline, batching
        time.sleep(0.5)


def test_phone_width_and_keyboard_only(service, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(390, 844)
    try:
        open_page(browser, service)
        # Nothing wider than the screen: the panes stack.
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        # Keyboard only: Tab reaches the question box, Enter asks.
        for _ in range(8):
            browser.switch_to.active_element.send_keys(Keys.TAB)
            if browser.switch_to.active_element.get_attribute("id") == "question":
                break
        assert browser.switch_to.active_element.get_attribute("id") == "question"
        browser.switch_to.active_element.send_keys(APPLE + Keys.ENTER)
        wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#messages .sources button"))
        screenshot(browser, "page-phone", tmp_path)
    finally:
        browser.set_window_size(1280, 900)
