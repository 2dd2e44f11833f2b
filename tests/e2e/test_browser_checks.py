"""Issue 13 in a real browser: the ODE check on ascent and sample results, the log p map of a large
upload, the image picker in sync across pages, and every page drawn (screenshots kept in
$DSM_E2E_SCREENSHOTS). Same server and browser fixtures as test_browser.py."""

import time
from pathlib import Path

import numpy as np
import pytest
from test_browser import (  # noqa: F401 - fixtures
    _go,
    _wait_idle,
    browser,
    model_dir,
    pytestmark,
    server,
    shots,
)

ODE_BUTTON = "Check with the probability-flow ODE"


def _open(browser, server: str):  # noqa: F811 - fixtures of test_browser
    page = browser.new_context(viewport={"width": 1400, "height": 3400}).new_page()
    page.goto(server)
    page.get_by_role("heading", name="Explore the test set").wait_for(timeout=60_000)
    _wait_idle(page)
    return page


def _ode_check(page, timeout: float = 120_000) -> str:
    """Press the ODE button, wait for its table; the page's text after it."""
    page.get_by_role("button", name=ODE_BUTTON).click()
    page.get_by_text("Tolerance: the larger of 3").first.wait_for(timeout=timeout)
    _wait_idle(page)
    table = page.locator('[data-testid="stDataFrame"]').last
    table.wait_for(timeout=timeout)
    return page.locator('[data-testid="stMain"]').inner_text()


def test_ode_check_on_ascent_and_sample_results(browser, server: str, shots: Path):  # noqa: F811 - fixtures of test_browser
    page = _open(browser, server)
    _go(page, "Gradient ascent / descent")
    page.get_by_role("button", name="Run").click()
    page.locator('[data-testid="stMetricLabel"]', has_text="gain [dB/dim]").wait_for(
        timeout=120_000
    )
    _wait_idle(page)
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "with the paper." in text and "total variation went from" in text
    text = _ode_check(page)
    assert "best (step" in text and "start" in text
    page.screenshot(path=str(shots / "11_ascent_ode_check.png"), full_page=True)

    _go(page, "Sample")
    steps = page.get_by_role("slider").first
    steps.focus()
    page.keyboard.press("Home")  # 10 steps
    _wait_idle(page)
    count = page.get_by_role("slider").nth(1)
    count.focus()
    page.keyboard.press("Home")  # 1 image
    page.keyboard.press("ArrowRight")  # 2 images
    _wait_idle(page)
    page.get_by_role("button", name="Sample", exact=True).click()
    page.get_by_role("button", name=ODE_BUTTON).wait_for(timeout=120_000)
    _wait_idle(page)
    text = _ode_check(page)
    assert "s0" in text and ("agree" in text or "ODE diverged" in text)
    assert not page.locator('[data-testid="stException"]').count()
    page.screenshot(path=str(shots / "12_sample_ode_check.png"), full_page=True)
    page.context.close()


def test_log_p_map_of_a_large_upload(browser, server: str, shots: Path, tmp_path: Path):  # noqa: F811 - fixtures of test_browser
    import upload_samples as samples

    page = _open(browser, server)
    _go(page, "Probe an image")
    page.get_by_text("Upload", exact=True).click()
    _wait_idle(page)
    rgb = samples.smooth_rgb(900, 1400, seed=4).copy()
    rgb[300:600, 500:900] = np.random.default_rng(0).integers(0, 256, (300, 400, 3))
    path = tmp_path / "large_photo.png"
    path.write_bytes(samples.encode(samples.Image.fromarray(rgb), "PNG"))
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    page.get_by_role("button", name="Compute the log p map").wait_for(timeout=120_000)
    _wait_idle(page)
    start = time.perf_counter()
    page.get_by_role("button", name="Compute the log p map").click()
    page.get_by_text("most probable tile:").first.wait_for(timeout=120_000)
    _wait_idle(page)
    seconds = time.perf_counter() - start
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "the number at the top of the page" in text and "1400×900" in text
    assert page.get_by_text("native resolution").count() >= 1
    page.screenshot(path=str(shots / "13_logp_map.png"), full_page=True)
    assert seconds < 120
    page.context.close()


def _number(page, label: str) -> str:
    return page.get_by_label(label, exact=False).first.input_value()


def test_picker_stays_in_sync_across_pages(browser, server: str, shots: Path):  # noqa: F811 - fixtures of test_browser
    page = _open(browser, server)
    _go(page, "Brightness & contrast")  # draws its picker first, on image 0
    assert _number(page, "test image") == "0"
    _go(page, "Probe an image")
    box = page.get_by_label("test image", exact=False).first
    box.fill("5")
    box.press("Enter")
    _wait_idle(page)
    _go(page, "Brightness & contrast")
    assert _number(page, "test image") == "5"
    box = page.get_by_label("test image", exact=False).first
    box.fill("3")
    box.press("Enter")
    _wait_idle(page)
    _go(page, "Interpolate")
    assert _number(page, "test image") == "3"
    _go(page, "Probe an image")
    assert _number(page, "test image") == "3"
    page.screenshot(path=str(shots / "14_picker_sync.png"))
    page.context.close()


PAGES = [
    "Explore the test set",
    "Probe an image",
    "Brightness & contrast",
    "Interpolate",
    "Gradient ascent / descent",
    "Compare estimators",
    "Sample",
    "Generalization (Fig. 2)",
    "Model",
    "What do these units mean?",
]


def _settled(page, timeout: float = 120_000) -> None:
    """Until the script has stopped running and no progress bar is left, twice in a row."""
    for _ in range(2):
        page.wait_for_timeout(1000)
        page.wait_for_function(
            """() => !document.querySelector('[data-testid="stStatusWidget"]')
                && !document.querySelector('[data-testid="stProgress"]')""",
            timeout=timeout,
        )
        _wait_idle(page, timeout)


@pytest.mark.slow  # the screenshots of every page; tests/app/test_default_model renders them too
def test_every_page_draws_without_an_exception(browser, server: str, shots: Path):  # noqa: F811 - fixtures of test_browser
    page = browser.new_context(viewport={"width": 1400, "height": 3400}).new_page()
    page.goto(server)
    page.get_by_role("heading", name="Explore the test set").wait_for(timeout=60_000)
    for number, title in enumerate(PAGES):
        _go(page, title)
        _settled(page)
        assert not page.locator('[data-testid="stException"]').count(), title
        name = title.split(" (")[0].lower().replace(" ", "_").replace("/", "").replace("&", "and")
        page.screenshot(path=str(shots / f"2{number}_{name}.png"))
    page.context.close()


def test_probe_figures_five_and_four(browser, server: str, shots: Path):  # noqa: F811 - fixtures of test_browser
    page = _open(browser, server)
    _go(page, "Probe an image")
    page.get_by_role("tab", name="Across noise levels (Fig. 5)").click()
    page.get_by_role("button", name="Compute", exact=True).click()
    page.get_by_text("effective dimensionality d_eff (eq. 11)").first.wait_for(timeout=120_000)
    _settled(page)
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "below the trained range" in text or "does not record the noise range" in text
    page.screenshot(path=str(shots / "15_probe_fig5.png"))
    page.get_by_role("tab", name="Sparsity (Fig. 4)").click()
    page.get_by_text("log p against sparsity").first.wait_for(timeout=60_000)
    _settled(page)
    page.screenshot(path=str(shots / "16_probe_fig4.png"))
    page.context.close()
