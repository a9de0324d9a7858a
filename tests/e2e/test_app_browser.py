"""The web demo in a real browser: start tools/app.py on localhost, drive it with headless Chromium
(Selenium + the system chromium / chromedriver), generate a clip, check the page plays a WAV and shows the
spectrogram, and write a screenshot (``$MAGNET_SCREENSHOT_DIR`` or the test's tmp folder)."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):  # tests/run.sh installs both; a missing browser is a setup error, not a skip
    raise RuntimeError("chromium + chromedriver are needed (apt-get install chromium chromium-driver; "
                       "tests/run.sh does this)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc, timeout: float = 240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited early:\n{proc.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


@pytest.fixture
def app_url(tmp_path):
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", XLA_FLAGS="")
    proc = subprocess.Popen([sys.executable, "tools/app.py", "--model=bundled", f"--port={port}"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1400,1800"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def test_generate_in_the_browser(app_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    driver = _browser()
    shots = Path(os.environ.get("MAGNET_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(app_url)
        wait = WebDriverWait(driver, 240)
        box = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#text textarea")))
        box.send_keys("a calm piano piece in C major, 80 bpm")
        dur = driver.find_element(By.CSS_SELECTOR, "#duration_s input")
        dur.clear()
        dur.send_keys("3")
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        wait.until(lambda d: "clip(s)" in d.find_element(By.CSS_SELECTOR, "#status").text)
        status = driver.find_element(By.CSS_SELECTOR, "#status").text
        assert "1 clip(s) of 3.00 s" in status, status
        # Gradio's player: an <audio> element driven by a waveform view, fed from the clip's file URL.
        assert driver.find_elements(By.CSS_SELECTOR, "#audio_out audio")
        src = wait.until(lambda d: d.execute_script(
            "const a = document.querySelector('#audio_out a[download]'); return a ? a.href : null;"))
        data = urllib.request.urlopen(src, timeout=30).read()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", data[:16]
        seconds = driver.execute_async_script(
            "const done = arguments[arguments.length - 1]; const a = new Audio(arguments[0]);"
            "a.onloadedmetadata = () => done(a.duration); a.onerror = () => done(-1);", src)
        assert abs(seconds - 3.0) < 0.05, seconds      # the browser decodes it: a playable 3 s WAV
        img = driver.find_element(By.CSS_SELECTOR, "#spectrogram_img img")
        assert img.is_displayed()
        assert driver.execute_script("return arguments[0].naturalWidth", img) > 100
        driver.save_screenshot(str(shots / "app.png"))
        assert (shots / "app.png").stat().st_size > 10_000
    finally:
        driver.quit()
