"""Drives a real headless Chromium through `spate serve`'s web UI for tests/serve.rs.

Usage: serve_browse.py BASE_URL TENANT TOKEN OTHER_TENANT JOB DASHBOARD

Opens the server's root (which leads to the sign-in form), signs in first with a wrong token
and then with TENANT's, and reads what that tenant's pages show: the jobs table, the
dashboards listed, the job's streaming page and the dashboard's rows. Then opens
OTHER_TENANT's pages (refused), signs out, and opens TENANT's pages again (back to the
sign-in). Prints one JSON object with what it saw; exits non-zero with a message on any failure.
"""

import json
import sys

from selenium.webdriver.common.by import By

from chromium import start, until

base, tenant, token, other, job, dashboard = sys.argv[1:7]


def sign_in(driver, with_token):
    field = driver.find_element(By.NAME, "token")
    field.clear()
    field.send_keys(with_token)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()


driver = start()
seen = {}
try:
    driver.get(base + "/")
    seen["first_page"] = driver.current_url[len(base):]
    sign_in(driver, "not-a-token")
    # The click posts the form: the refusal is a new page, read once it has come.
    seen["wrong_token"] = until(driver, "the wrong token's refusal", lambda: driver.find_element(
        By.CSS_SELECTOR, "[role=alert]").text)
    sign_in(driver, token)
    until(driver, "the tenant's pages", lambda: driver.current_url.startswith(
        f"{base}/tenants/{tenant}"))
    seen["signed_in_at"] = driver.current_url[len(base):]

    rows = """return [...document.querySelectorAll('#jobs tbody tr')]
        .map((r) => [...r.cells].map((c) => c.textContent));"""
    until(driver, "the jobs table", lambda: driver.execute_script(rows))
    seen["jobs"] = driver.execute_script(rows)
    usage = """return [...document.querySelectorAll('#usage tbody tr')]
        .map((r) => [...r.cells].map((c) => c.textContent));"""
    until(driver, "the tenant's usage", lambda: driver.execute_script(usage))
    seen["usage"] = driver.execute_script(usage)
    seen["dashboards"] = driver.execute_script(
        "return [...document.querySelectorAll('#dashboards a')]"
        ".map((a) => a.getAttribute('href'));")

    driver.get(f"{base}/tenants/{tenant}/jobs/{job}")
    batches = "return document.querySelectorAll('#batches tbody tr').length;"
    until(driver, "the job's batches", lambda: driver.execute_script(batches) > 0)
    seen["batch_links"] = driver.execute_script(
        "return [...document.querySelectorAll('#batches tbody tr td a')]"
        ".slice(0, 1).map((a) => a.getAttribute('href'));")

    driver.get(f"{base}/tenants/{tenant}/dashboards/{dashboard}")
    keys = """return [...document.querySelectorAll('#rows tbody tr')]
        .map((r) => r.cells[0].textContent);"""
    until(driver, "the dashboard's rows", lambda: driver.execute_script(keys))
    seen["dashboard_keys"] = driver.execute_script(keys)

    driver.get(f"{base}/tenants/{other}/")
    seen["other_tenant"] = driver.find_element(By.TAG_NAME, "body").text

    driver.get(base + "/login")
    driver.execute_script("""const f = document.createElement('form');
        f.method = 'post'; f.action = '/logout'; document.body.append(f); f.submit();""")
    until(driver, "the sign-in form after signing out",
          lambda: driver.current_url.endswith("/login"))
    driver.get(f"{base}/tenants/{tenant}/")
    seen["after_sign_out"] = driver.current_url[len(base):]
finally:
    driver.quit()
print(json.dumps(seen))
