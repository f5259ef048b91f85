"""What the browser scripts of the tests share: a headless Chromium driven by Selenium, and a
wait for something on the page that reports what it waited for and what the page showed."""

import os
import sys

from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException,
                                        StaleElementReferenceException, TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def start():
    """A headless Chromium (the Debian package's, installed by install-ui-test-tools.sh)."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,1400"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def until(driver, what, check, timeout=60):
    """Waits until check() is truthy and returns it; exits naming `what` if it never is."""
    # Pages re-render as batches come: an element read a moment ago can be gone (stale), so
    # that is retried like an element not there yet.
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=[StaleElementReferenceException,
                                                 NoSuchElementException]).until(lambda d: check())
    except TimeoutException:
        script = os.path.basename(sys.argv[0])
        sys.exit(f"{script}: timed out waiting for {what} on {driver.current_url}:\n"
                 + driver.find_element(By.TAG_NAME, "body").text[:2000])
