"""Drives a real headless Chromium through Spate's web UI for tests/ui.rs.

Usage: browse.py BASE_URL JOB DASHBOARD EXPECTED_INPUT_RECORDS SCREENSHOT_DIR

Opens the jobs page, the job's streaming page (and checks that it advances while batches run,
without a reload), a batch's page and the dashboard, saving a screenshot of each; then waits
until the job has read EXPECTED_INPUT_RECORDS records and reads /metrics with the Prometheus
project's own parser and the batches from the JSON API. Prints one JSON object with what it saw;
tests/ui.rs compares it with the job's own output. Exits non-zero with a message on any failure.
"""

import json
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, job, dashboard, expected, shots = sys.argv[1:6]
expected = int(expected)


def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return response.read().decode()


def until(driver, what, check, timeout=20):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: check())
    except Exception:
        sys.exit(f"browse.py: timed out waiting for {what} on {driver.current_url}:\n"
                 + driver.find_element(By.TAG_NAME, "body").text[:2000])


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--window-size=1280,1400"]:
    options.add_argument(flag)
driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
seen = {}
try:
    # The jobs page: a row for the job, linked to its page.
    driver.get(base + "/")
    until(driver, "the job's row", lambda: [
        r for r in driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
        if r.find_elements(By.TAG_NAME, "td")[0].text == job])
    row = [r for r in driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
           if r.find_elements(By.TAG_NAME, "td")[0].text == job][0]
    seen["jobs_row"] = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    seen["dashboard_links"] = [a.get_attribute("href") for a in
                               driver.find_elements(By.CSS_SELECTOR, "#dashboards a")]
    driver.save_screenshot(f"{shots}/jobs.png")

    # The streaming page: charts with points, batches listed; it advances by itself.
    driver.get(f"{base}/jobs/{job}")

    def points(chart):
        lines = driver.find_elements(By.CSS_SELECTOR, f"#{chart} polyline")
        return sum(int(line.get_attribute("data-points") or 0) for line in lines)

    until(driver, "charts with points", lambda: points("processing-time") >= 2)
    first_rows = len(driver.find_elements(By.CSS_SELECTOR, "#batches tbody tr"))
    first_batch = driver.find_element(By.CSS_SELECTOR, "#batches tbody tr td").text
    version = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-version"))
    driver.execute_script("window.notReloaded = true")
    until(driver, "a newer batch without a reload", lambda: driver.find_element(
        By.CSS_SELECTOR, "#batches tbody tr td").text != first_batch)
    seen["live"] = {
        "reloaded": not driver.execute_script("return window.notReloaded === true"),
        "versions": [version, int(driver.find_element(By.TAG_NAME, "body")
                                  .get_attribute("data-version"))],
        "first_batch": first_batch,
        "later_batch": driver.find_element(By.CSS_SELECTOR, "#batches tbody tr td").text,
        "rows": [first_rows, len(driver.find_elements(By.CSS_SELECTOR, "#batches tbody tr"))],
    }
    seen["charts"] = {c: points(c) for c in
                      ["input-rate", "scheduling-delay", "processing-time", "total-delay"]}
    seen["stability_line"] = len(driver.find_elements(By.CSS_SELECTOR, "#processing-time line.guide"))
    seen["histogram_bars"] = len(driver.find_elements(By.CSS_SELECTOR, "#processing-time-hist rect"))
    seen["plan"] = driver.find_element(By.ID, "plan").text
    driver.save_screenshot(f"{shots}/streaming.png")

    # A batch's page, through its link.
    link = driver.find_element(By.CSS_SELECTOR, "#batches tbody tr td a")
    link.click()
    until(driver, "the batch table", lambda: driver.find_elements(By.CSS_SELECTOR, "#batch tbody tr"))
    seen["batch_page"] = {r.find_elements(By.TAG_NAME, "td")[0].text:
                          r.find_elements(By.TAG_NAME, "td")[1].text
                          for r in driver.find_elements(By.CSS_SELECTOR, "#batch tbody tr")}
    driver.save_screenshot(f"{shots}/batch.png")

    # The dashboard: bars and the table of the latest batch, lines over recent batches.
    driver.get(f"{base}/dashboards/{dashboard}")
    until(driver, "bars", lambda: driver.find_elements(By.CSS_SELECTOR, "#bars rect"))
    until(driver, "lines with points", lambda: points("lines") >= 2)
    view = json.loads(get(f"/api/v1/dashboards/{dashboard}"))
    seen["dashboard"] = {
        "title": driver.find_element(By.TAG_NAME, "h1").text,
        "bars": [(b.get_attribute("data-key"), b.get_attribute("data-value"))
                 for b in driver.find_elements(By.CSS_SELECTOR, "#bars rect")],
        "rows": [[td.text for td in r.find_elements(By.TAG_NAME, "td")]
                 for r in driver.find_elements(By.CSS_SELECTOR, "#rows tbody tr")],
        "lines": len(driver.find_elements(By.CSS_SELECTOR, "#lines polyline")),
        "api_batch_time_ms": view["batch_time_ms"],
        "api_rows": [[r["key"], r["value"]] for r in view["rows"]],
    }
    driver.save_screenshot(f"{shots}/dashboard.png")
finally:
    driver.quit()

# Once every record is in, /metrics and the JSON API agree with the job's log (tests/ui.rs).
deadline = time.time() + 60
while True:
    state = json.loads(get(f"/api/v1/jobs/{job}"))
    if sum(state["totals"]["source_records"]) >= expected:
        break
    if time.time() > deadline:
        sys.exit(f"browse.py: the job read {state['totals']['source_records']} of {expected}")
    time.sleep(0.2)
metrics = {}
for family in text_string_to_metric_families(get("/metrics")):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        metrics[f"{sample.name}{{{labels}}}"] = sample.value
seen["metrics"] = metrics
seen["batches"] = json.loads(get(f"/api/v1/jobs/{job}/batches?limit=1000"))
print(json.dumps(seen))
