"""The browser sample (examples/browser/) end to end in headless Chromium.

The page runs on its own origin; the API on another (same site). The test
registers, signs in (cookie mode), sees the profile and its session, reloads
and is still signed in through the cookie alone, proves page JavaScript
cannot read the refresh cookie, signs out and is signed out after a reload.
Run by `cargo xtask test` (xtask/src/browser.rs), which starts both servers.
"""

import argparse
import sys
import time
import uuid

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def text_is(element_id, expected):
    return lambda d: d.find_element(By.ID, element_id).text == expected


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--page", required=True)
    parser.add_argument("--screenshot", required=True)
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1000,1300"):
        options.add_argument(flag)
    started = time.monotonic()
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    wait = WebDriverWait(driver, 20)
    try:
        driver.get(args.page)
        wait.until(text_is("status", "Not signed in."))

        username = "browser_" + uuid.uuid4().hex[:8]
        driver.find_element(By.ID, "register-username").send_keys(username)
        driver.find_element(By.ID, "register-email").send_keys(username + "@example.com")
        driver.find_element(By.ID, "register-password").send_keys("Correct-Horse-Battery-9!")
        driver.find_element(By.CSS_SELECTOR, "#register-form button").click()
        wait.until(text_is("who", username))
        profile = driver.find_element(By.ID, "profile").text
        assert username + "@example.com" in profile, profile
        wait.until(lambda d: "(this one)" in d.find_element(By.ID, "sessions").text)

        # The refresh cookie is there, HttpOnly, and page JavaScript cannot
        # see it (cookies are per host, not per port: without HttpOnly this
        # page would read the API's cookie).
        cookies = {c["name"]: c for c in driver.get_cookies()}
        assert "refresh" in cookies, cookies
        assert cookies["refresh"]["httpOnly"] is True, cookies["refresh"]
        assert cookies["refresh"]["sameSite"] == "Strict", cookies["refresh"]
        visible = driver.execute_script("return document.cookie")
        assert "refresh" not in visible, visible
        # Nor did the token reach the page's storage.
        stored = driver.execute_script(
            "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
        assert stored == "{}{}", stored

        # A reload keeps only the cookie: the page signs in again with it.
        driver.refresh()
        wait.until(text_is("who", username))
        driver.save_screenshot(args.screenshot)

        driver.find_element(By.ID, "logout").click()
        wait.until(text_is("status", "Signed out."))
        assert "refresh" not in {c["name"] for c in driver.get_cookies()}
        driver.refresh()
        wait.until(text_is("status", "Not signed in."))
    except Exception:
        driver.save_screenshot(args.screenshot.replace(".png", "-failed.png"))
        print(driver.page_source, file=sys.stderr)
        raise
    finally:
        driver.quit()
    print(f"browser test passed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
