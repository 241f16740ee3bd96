"""The report and the explorer in a real headless browser (Debian's chromium + chromium-driver via selenium).

Skipped, with the reason, where selenium, chromium or its driver is missing. With
MIXGAN_SCREENSHOTS=FOLDER the tests also save screenshots of both pages there (docs/img/).
"""
import os
import shutil
import contextlib
import threading
from pathlib import Path

import pytest

import mixgan

from conftest import small_config

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")


def _find(names):
    for name in names:
        path = shutil.which(name) or (name if os.path.isfile(name) and os.access(name, os.X_OK) else None)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    browser, chromedriver = _find(BROWSERS), _find(DRIVERS)
    if browser is None or chromedriver is None:
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1000,900", "--no-proxy-server", "--disable-background-networking"):
        options.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    try:
        d = webdriver.Chrome(service=Service(chromedriver), options=options)
    except Exception as exc:  # a driver that does not match the browser, no display libraries, ...
        pytest.skip(f"the headless browser does not start: {str(exc).splitlines()[0]}")
    d.set_page_load_timeout(60)
    yield d
    d.quit()


# steps between grids and evaluations, and their number: for screenshots a run long enough to show something
EVERY, TIMES = (150, 4) if os.environ.get("MIXGAN_SCREENSHOTS") else (10, 3)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny digits GM-GAN with quality during training and a latent-scale sweep."""
    from mixgan.cli import main

    tmp = tmp_path_factory.mktemp("browser")
    run = mixgan.train(small_config(tmp, **{
        "data.dataset": "digits", "encoder.enabled": False, "prior.means": "uniform", "prior.sigma": 1.0,
        "prior.components": 6, "model.width": 16, "train.steps": EVERY * TIMES, "train.batch_size": 32,
        "train.log_every": 5, "train.sample_every": EVERY, "train.checkpoint_every": EVERY * TIMES,
        "train.eval_every": EVERY, "train.eval_samples": 200}))
    assert main(["tradeoff", str(run.path), "--scales", "0.5,1,1.5", "--n", "100", "--quiet", "--device", "cpu"]) == 0
    return run


def _screenshot(driver, name: str, element=None) -> None:
    """The page's top (or ``element``) as a small PNG in $MIXGAN_SCREENSHOTS, where that is set."""
    folder = os.environ.get("MIXGAN_SCREENSHOTS")
    if not folder:
        return
    from PIL import Image

    path = Path(folder) / name
    if element is not None:
        element.screenshot(str(path))
    else:
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(path))
    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)  # small PNGs for the docs


def _wait(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def _outside_requests(driver, allowed: tuple[str, ...]) -> list[str]:
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"
                                  ".concat([location.href])")
    return [n for n in names if not n.startswith(allowed)]


@contextlib.contextmanager
def serving(run):
    """The run's explorer served on a free local port for the length of a with-block."""
    from mixgan.explore import open_server

    server = open_server(run.path, port=0, run=run)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


PIXELS = """var img = arguments[0];
if (!img.complete || img.naturalWidth === 0) return null;
var c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
c.getContext('2d').drawImage(img, 0, 0); return c.toDataURL();"""


def test_explorer_in_a_browser_slider_and_gaussian_change_the_samples_and_nothing_leaves_localhost(driver, digits_run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    with serving(digits_run) as server:
        driver.get(server.url)
        grid = driver.find_element(By.ID, "grid")
        first = _wait(driver, lambda d: d.execute_script(PIXELS, grid))
        _wait(driver, lambda d: "quality" in d.find_element(By.ID, "score").text)

        scale = driver.find_element(By.ID, "scale")
        for _ in range(10):  # s 1.00 -> 0.50, as a person would with the arrow keys
            scale.send_keys(Keys.ARROW_LEFT)
        assert driver.find_element(By.ID, "scale-value").text == "0.50"
        smaller = _wait(driver, lambda d: (p := d.execute_script(PIXELS, grid)) not in (None, first) and p)

        Select(driver.find_element(By.ID, "choice")).select_by_value("3")
        other = _wait(driver, lambda d: (p := d.execute_script(PIXELS, grid)) not in (None, first, smaller) and p)
        assert grid.get_attribute("data-query") == "choice=3&scale=0.50&seed=0"
        _wait(driver, lambda d: "quality" in d.find_element(By.ID, "score").text)
        assert other
        _screenshot(driver, "explore.png")

        assert _outside_requests(driver, (server.url,)) == []
        assert server.log and all(line.split()[1].startswith("/") for line in server.log)


def test_report_in_a_browser_renders_its_curves_and_every_picture(driver, digits_run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from mixgan.report import write_report

    page = write_report(digits_run.path)
    driver.get(page.resolve().as_uri())
    images = driver.find_elements(By.TAG_NAME, "img")
    assert len(images) >= TIMES + 3  # the timeline's grids and the grid of every scale
    _wait(driver, lambda d: all(d.execute_script("return arguments[0].complete", i) for i in images))
    assert [i.get_attribute("alt") for i in images
            if driver.execute_script("return arguments[0].naturalWidth", i) == 0] == []
    fid = driver.find_element(By.CSS_SELECTOR, "#chart-fid polyline[data-series=fid]")
    box = driver.execute_script("var b = arguments[0].getBBox(); return [b.width, b.height]", fid)
    assert box[0] > 100  # the evaluations drawn across the chart
    assert len(driver.find_elements(By.CSS_SELECTOR, "#chart-scale-fid polyline")) == 1

    visible = lambda d: [f.get_attribute("data-step") for f in d.find_elements(By.CLASS_NAME, "frame") if f.is_displayed()]
    assert visible(driver) == [str(EVERY * TIMES)]
    slider = driver.find_element(By.ID, "timeline")
    slider.send_keys(Keys.HOME)
    # the first grid is the one drawn at step 0, before any training
    assert visible(driver) == ["0"] and driver.find_element(By.ID, "timeline-step").text == "step 0"
    slider.send_keys(Keys.END)
    _screenshot(driver, "report.png")
    _screenshot(driver, "report-timeline.png", driver.find_element(By.CLASS_NAME, "frames"))
    assert _outside_requests(driver, ("file://", "data:")) == []


def test_explorer_keeps_up_with_ten_quick_moves_and_a_click_enlarges_a_sample(driver, digits_run):
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with serving(digits_run) as server:
        driver.get(server.url)
        grid = driver.find_element(By.ID, "grid")
        _wait(driver, lambda d: grid.get_attribute("data-query"))
        scale = driver.find_element(By.ID, "scale")
        for _ in range(10):  # as fast as the keys go: s 1.00 -> 1.50
            scale.send_keys(Keys.ARROW_RIGHT)
        moved = time.monotonic()
        want = "choice=all&scale=1.50&seed=0"
        _wait(driver, lambda d: grid.get_attribute("data-query") == want and d.execute_script(PIXELS, grid), timeout=2)
        assert time.monotonic() - moved < 2
        shown = driver.execute_script(PIXELS, grid)
        from PIL import Image
        import base64
        import io
        png = server.explorer.grid_png(None, 1.5, 0)
        assert Image.open(io.BytesIO(base64.b64decode(shown.split(",", 1)[1]))).convert("L").tobytes() == \
            Image.open(io.BytesIO(png)).convert("L").tobytes()  # the last setting's own grid
        _wait(driver, lambda d: "quality" in d.find_element(By.ID, "score").text)

        grid.click()
        zoom = driver.find_element(By.ID, "zoom")
        big = driver.find_element(By.ID, "zoom-img")
        _wait(driver, lambda d: zoom.is_displayed() and d.execute_script("return arguments[0].naturalWidth", big) == 256)
        assert big.size["width"] > grid.size["width"] / server.explorer.columns * 2
        zoom.click()
        assert not zoom.is_displayed()
        server.server_close()
