"""Drives a real headless Chromium through Spate's web UI for tests/ui.rs.

Usage: browse.py BASE_URL JOB DASHBOARD EXPECTED_INPUT_RECORDS SCREENSHOT_DIR FILES

Opens the jobs page, the job's streaming page (and checks that it advances while batches run,
without a reload), a batch's page (with its tasks per stage) and the dashboard, saving a
screenshot of each; waits until the job has read EXPECTED_INPUT_RECORDS records, then opens
the sources, operators and checkpoints pages, and reads /metrics with the Prometheus project's
own parser and the batches from the JSON API. Prints one JSON object with what it saw;
tests/ui.rs compares it with the job's own output. Exits non-zero with a message on any failure.
"""

import json
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from selenium.webdriver.common.by import By

from chromium import start, until

base, job, dashboard, expected, shots = sys.argv[1:6]
expected = int(expected)


def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return response.read().decode()


driver = start()
seen = {}
try:
    # The jobs page: a row for the job, linked to its page.
    driver.get(base + "/")
    jobs = f"""const row = [...document.querySelectorAll('#jobs tbody tr')]
            .find((r) => r.cells[0].textContent === {json.dumps(job)});
        return row ? {{ row: [...row.cells].map((c) => c.textContent),
                       links: [...document.querySelectorAll('#dashboards a')].map((a) => a.href) }}
                   : null;"""
    until(driver, "the job's row", lambda: driver.execute_script(jobs))
    found = driver.execute_script(jobs)
    seen["jobs_row"] = found["row"]
    seen["dashboard_links"] = found["links"]
    driver.save_screenshot(f"{shots}/jobs.png")

    # The streaming page: charts with points, batches listed; it advances by itself.
    driver.get(f"{base}/jobs/{job}")

    def points(chart):
        return driver.execute_script(
            f"return [...document.querySelectorAll('#{chart} polyline')]"
            ".reduce((n, l) => n + Number(l.dataset.points || 0), 0);")

    until(driver, "charts with points", lambda: points("processing-time") >= 2)
    # One script reads what one render drew (a render replaces the page at once).
    newest = """const cell = document.querySelector('#batches tbody tr td');
        return [cell ? cell.textContent : null, Number(document.body.dataset.version),
                document.querySelectorAll('#batches tbody tr').length];"""
    first_batch, version, first_rows = driver.execute_script(newest)
    driver.execute_script("window.notReloaded = true")
    until(driver, "a newer batch without a reload",
          lambda: driver.execute_script(newest)[0] != first_batch)
    later_batch, later_version, later_rows = driver.execute_script(newest)
    seen["live"] = {
        "reloaded": not driver.execute_script("return window.notReloaded === true"),
        "versions": [version, later_version],
        "first_batch": first_batch,
        "later_batch": later_batch,
        "rows": [first_rows, later_rows],
    }
    seen["charts"] = {c: points(c) for c in
                      ["input-rate", "scheduling-delay", "processing-time", "total-delay"]}
    seen["stability_line"] = len(driver.find_elements(By.CSS_SELECTOR, "#processing-time line.guide"))
    seen["histogram_bars"] = len(driver.find_elements(By.CSS_SELECTOR, "#processing-time-hist rect"))
    seen["plan"] = driver.execute_script("return document.getElementById('plan').textContent")
    seen["graph"] = driver.execute_script(
        "return [...document.querySelectorAll('#plan-graph g.node')]"
        ".map((g) => [g.querySelector('text').textContent, Number(g.dataset.busyMs)]);")
    seen["graph_edges"] = len(driver.find_elements(By.CSS_SELECTOR, "#plan-graph line.edge"))
    seen["streaming_outputs"] = driver.execute_script(
        "return [...document.querySelectorAll('#outputs tbody tr')]"
        ".map((r) => [...r.cells].map((c) => c.textContent));")
    driver.save_screenshot(f"{shots}/streaming.png")

    # A batch's page, through its link.
    driver.get(driver.execute_script(
        "return document.querySelector('#batches tbody tr td a').href"))
    batch = """return Object.fromEntries([...document.querySelectorAll('#batch tbody tr')]
        .map((r) => [r.cells[0].textContent, r.cells[1].textContent]));"""
    until(driver, "the batch table", lambda: driver.execute_script(batch))
    seen["batch_page"] = driver.execute_script(batch)
    seen["batch_tasks"] = driver.execute_script("""
        return Object.fromEntries([...document.querySelectorAll('table.tasks')].map((t) => [
          t.id, [...t.querySelectorAll('tbody tr')].map((r) => [...r.cells].map((c) => c.textContent))]));""")
    seen["batch_outputs"] = driver.execute_script(
        "return [...document.querySelectorAll('#outputs tbody tr')]"
        ".map((r) => [...r.cells].map((c) => c.textContent));")
    driver.save_screenshot(f"{shots}/batch.png")

    # The dashboard: bars and the table of the latest batch, lines over recent batches.
    driver.get(f"{base}/dashboards/{dashboard}")
    until(driver, "bars", lambda: driver.find_elements(By.CSS_SELECTOR, "#bars rect"))
    until(driver, "lines with points", lambda: points("lines") >= 2)
    # What one render shows: its batch time, bars, table rows and lines.
    board = driver.execute_script("""
        const text = (q) => [...document.querySelectorAll(q)];
        return {
          title: document.querySelector('h1').textContent,
          batch_time_ms: Number(document.getElementById('main').dataset.batchTime),
          bars: text('#bars rect').map((b) => [b.dataset.key, b.dataset.value]),
          rows: text('#rows tbody tr').map((r) => [...r.cells].map((c) => c.textContent)),
          lines: text('#lines polyline').length,
        };""")
    view = json.loads(get(f"/api/v1/dashboards/{dashboard}"))
    board["api_batch_time_ms"] = view["batch_time_ms"]
    board["api_rows"] = [[r["key"], r["value"]] for r in view["rows"]]
    seen["dashboard"] = board
    driver.save_screenshot(f"{shots}/dashboard.png")

    # Once every record is in, the sources page shows where each file was read to.
    deadline = time.time() + 60
    while True:
        state = json.loads(get(f"/api/v1/jobs/{job}"))
        if sum(state["totals"]["source_records"]) >= expected:
            break
        if time.time() > deadline:
            sys.exit(f"browse.py: the job read {state['totals']['source_records']} of {expected}")
        time.sleep(0.2)
    table = """return Object.fromEntries([...document.querySelectorAll(arguments[0] + ' tbody tr')]
        .map((r) => [r.cells[0].textContent, [...r.cells].slice(1).map((c) => c.textContent)]));"""
    driver.get(f"{base}/jobs/{job}/sources")
    until(driver, "every file's position",
          lambda: len(driver.execute_script(table, "table.positions")) >= int(sys.argv[6]))
    seen["positions"] = driver.execute_script(table, "table.positions")
    driver.save_screenshot(f"{shots}/sources.png")
    driver.get(f"{base}/jobs/{job}/operators")
    until(driver, "the operators", lambda: driver.find_elements(By.CSS_SELECTOR, "h2"))
    seen["operators"] = {
        name: driver.execute_script(table, f"#operator-{name}")
        for name in driver.execute_script(
            "return [...document.querySelectorAll('h2')].map((h) => h.textContent);")}
    driver.save_screenshot(f"{shots}/operators.png")
    driver.get(f"{base}/jobs/{job}/checkpoints")
    until(driver, "a checkpoint", lambda: driver.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr"))
    seen["checkpoints"] = driver.execute_script(
        "return [...document.querySelectorAll('#checkpoints tbody tr')]"
        ".map((r) => [...r.cells].map((c) => c.textContent));")
    driver.save_screenshot(f"{shots}/checkpoints.png")
finally:
    driver.quit()

# /metrics and the JSON API agree with the job's log (tests/ui.rs).
metrics = {}
for family in text_string_to_metric_families(get("/metrics")):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        metrics[f"{sample.name}{{{labels}}}"] = sample.value
seen["metrics"] = metrics
seen["batches"] = json.loads(get(f"/api/v1/jobs/{job}/batches?limit=1000"))
print(json.dumps(seen))
