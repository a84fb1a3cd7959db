# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""report.html in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromium-driver, loading the file offline (file://). No engine: no engine lock, and an
xdist group of its own (tests/conftest.py)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_samples import fleet_results
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

import permfix_testlib as lib
from ansible_collections.permfix.containers.plugins.filter.report import FilterModule

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FILTERS = FilterModule().filters()


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    """report.json and report.html of a compared 200-host report, as audit.yml writes them."""
    directory = tmp_path_factory.mktemp("report_html")
    previous = FILTERS["report"](fleet_results(affected=4), "2026-11-21T20:00:00Z")
    report = FILTERS["report"](fleet_results(), "2026-11-22T20:00:00Z", previous)
    (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lib.validate_report(directory / "report.json")
    (directory / "report.html").write_text(FILTERS["report_html"](report))
    return {"dir": directory, "report": report, "url": (directory / "report.html").as_uri()}


def _driver(javascript: bool) -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="permfix-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--window-size=1400,1800",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(written) -> Iterator[webdriver.Chrome]:
    yield from _driver(javascript=True)


@pytest.fixture
def page(browser, written) -> webdriver.Chrome:
    """A fresh load of report.html (every test starts unfiltered and unsorted)."""
    browser.get(written["url"])
    return browser


def _rows(driver, visible_only: bool = True) -> list:
    rows = driver.find_elements(By.CSS_SELECTOR, "#findings tbody tr.finding")
    return [row for row in rows if row.is_displayed()] if visible_only else rows


def _findings(report: dict) -> list[tuple[str, dict]]:
    return [(host, finding) for host, entry in report["hosts"].items() for finding in entry["findings"]]


def test_counts_shown_equal_the_report(page, written):
    summary = written["report"]["summary"]
    shown = {cell.get_attribute("data-count"): int(cell.text)
             for cell in page.find_elements(By.CSS_SELECTOR, "#summary td[data-count]")}
    assert shown == {"hosts": 200, "audited": 198, "unreachable": 2, **summary["findings"]}
    bars = {(shape.get_attribute("data-chart"), shape.get_attribute("data-name")):
            int(shape.get_attribute("data-count")) for shape in page.find_elements(By.CSS_SELECTOR, "#chart g.bar")}
    assert bars == {**{("severity", name): count for name, count in summary["findings"].items()},
                    **{("class", name): count for name, count in summary["by_class"].items()}}
    assert page.find_element(By.CSS_SELECTOR, "#chart g.bar[data-name=bind_mount] rect").size["width"] > 0
    since = {cell.get_attribute("data-since"): int(cell.text)
             for cell in page.find_elements(By.CSS_SELECTOR, "#since td[data-since]")}
    assert since == {"new-error": 3, "new-warning": 0, "new-info": 1, "unchanged": 8, "resolved": 2, "unverified": 0}
    rows = _rows(page)
    assert len(rows) == sum(summary["findings"].values()) == len(_findings(written["report"]))
    assert page.find_element(By.ID, "shown").text == str(len(rows))


def test_filtering_by_class_hides_the_other_rows(page, written):
    Select(page.find_element(By.ID, "filter-class")).select_by_visible_text("subid")
    rows = _rows(page)
    assert len(rows) == written["report"]["summary"]["by_class"]["subid"] == 3
    assert {row.get_attribute("data-class") for row in rows} == {"subid"}
    assert len(_rows(page, visible_only=False)) == 12
    Select(page.find_element(By.ID, "filter-host")).select_by_visible_text("node005.example.com")
    Select(page.find_element(By.ID, "filter-severity")).select_by_visible_text("error")
    assert [(r.get_attribute("data-host"), r.get_attribute("data-class")) for r in _rows(page)] \
        == [("node005.example.com", "subid")]
    assert page.find_element(By.ID, "shown").text == "1"


def test_sorting_changes_the_order(page):
    def column(index: int) -> list[str]:
        return [row.find_elements(By.TAG_NAME, "td")[index].text for row in _rows(page)]

    before = column(0)
    assert before == sorted(before)
    host = page.find_element(By.CSS_SELECTOR, "#findings th[data-column=host]")
    host.click()  # ascending: the order it already has
    host.click()
    assert host.get_attribute("aria-sort") == "descending"
    assert column(0) == sorted(before, reverse=True) and column(0) != before
    page.find_element(By.CSS_SELECTOR, "#findings th[data-column=severity]").click()
    severities = column(1)
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    page.find_element(By.CSS_SELECTOR, "#findings th[data-column=class]").click()
    classes = column(2)
    assert classes == sorted(classes) and len(set(classes)) == 4


def test_expanding_a_finding_shows_observed_expected_evidence_and_fix(page, written):
    host, finding = _findings(written["report"])[0]
    row = page.find_element(By.CSS_SELECTOR, f"#findings tr[data-host='{host}']")
    observed = row.find_element(By.CSS_SELECTOR, "dd.observed")
    assert not observed.is_displayed()
    row.find_element(By.TAG_NAME, "summary").click()
    assert observed.is_displayed()
    assert "uid: 0" in observed.text and "mode: 0755" in observed.text
    assert "uid: 1000" in row.find_element(By.CSS_SELECTOR, "dd.expected").text
    assert "inspect Config.User: 1000:1000" in row.find_element(By.CSS_SELECTOR, "dd.evidence").text
    assert row.find_element(By.CSS_SELECTOR, "dd.fix").text == finding["fix"]
    volume = page.find_element(By.CSS_SELECTOR, "#findings tr[data-class=named_volume]")
    volume.find_element(By.TAG_NAME, "summary").click()
    assert volume.find_element(By.CSS_SELECTOR, "dd.advice").text == "set_user: value=999:999"
    shot = Path(written["dir"]) / "report-html.png"
    assert page.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_user_data_is_escaped_and_the_page_makes_no_request(page, written):
    cell = page.find_element(By.CSS_SELECTOR, "#findings tr[data-host='node005.example.com'] td:nth-child(5)")
    assert cell.text == "<script>alert(1)</script>"
    assert page.find_elements(By.CSS_SELECTOR, "#findings script") == []
    for element in page.find_elements(By.CSS_SELECTOR, "[src], [href]"):
        for attribute in ("src", "href"):
            value = element.get_attribute(attribute) or ""
            assert not value or value.startswith(("file:", "#", "data:")), value
    page.get_log("performance")  # drop what the browser did before (its new-tab page)
    page.get(written["url"])
    requests = [json.loads(entry["message"])["message"] for entry in page.get_log("performance")]
    urls = [event["params"]["request"]["url"] for event in requests if event["method"] == "Network.requestWillBeSent"]
    assert urls and all(url.startswith("file://") for url in urls), urls
    html = (Path(written["dir"]) / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    assert "default-src 'none'" in html


def test_without_javascript_every_finding_is_shown(written):
    for driver in _driver(javascript=False):
        driver.get(written["url"])
        rows = _rows(driver)
        assert len(rows) == len(_findings(written["report"])) == 12
        assert {row.get_attribute("data-id") for row in rows} == {f["id"] for _h, f in _findings(written["report"])}
        assert not driver.find_element(By.ID, "filters").is_displayed()  # the script did not run
        assert driver.find_element(By.CSS_SELECTOR, "#unreachable").text.count("unreachable: Failed") == 2
        assert "193:" in driver.find_element(By.ID, "clean").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#resolved tr")) == 3
        rows[0].find_element(By.TAG_NAME, "summary").click()  # <details> opens without a script
        assert rows[0].find_element(By.CSS_SELECTOR, "dd.fix").is_displayed()
