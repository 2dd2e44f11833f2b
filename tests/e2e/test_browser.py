"""The app in a real browser: `streamlit run` + Debian chromium driven by Playwright (sync API).

Upload a PNG and read its log p, move the contrast slider, run a short gradient ascent, switch
pages; eight sessions at once on different images. Screenshots go to $DSM_E2E_SCREENSHOTS
(kept) or to pytest's tmp_path; timings to timings.json beside them. DSM_E2E_MODEL runs the same
checks on another model folder (e.g. checkpoints/default) instead of a tiny random one.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
sys.path.insert(0, str(ROOT / "tests" / "app"))
sys.path.insert(0, str(ROOT / "tests"))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's chromium at /usr/bin/chromium (apt-get install "
        "chromium); Playwright's own browsers are not used",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("DSM_E2E_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screens")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("DSM_E2E_MODEL"):
        return Path(os.environ["DSM_E2E_MODEL"]).resolve()
    from app_helpers import make_model_folder

    return make_model_folder(tmp_path_factory.mktemp("e2e_model"))


@pytest.fixture(scope="module")
def server(model_dir: Path, shots: Path) -> Iterator[str]:
    port = _free_port()
    env = dict(
        os.environ,
        DSM_MODEL=str(model_dir),
        DSM_TORCH_THREADS="1",
        HF_HUB_OFFLINE="1",
        STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
    )
    log = open(shots / "server.log", "w")  # noqa: SIM115 - closed below
    start = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app/main.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as reply:
                    if reply.read() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start; see {shots / 'server.log'}")
            time.sleep(0.2)
        os.environ["_DSM_E2E_SERVER_START"] = str(start)
        os.environ["_DSM_E2E_SERVER_PID"] = str(process.pid)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _new_page(browser):
    """A page in a context of its own: its own cookies, websocket and Streamlit session."""
    return browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()


@pytest.fixture(scope="module")
def page(browser, server: str):
    return _new_page(browser)


_IDLE = """() => !document.querySelector('[data-testid="stStatusWidget"]')
    && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
        .filter(chart => !chart.closest('[data-stale="true"]'))
        .every(chart => chart.querySelector('.main-svg'))"""


def _wait_idle(page, timeout: float = 60_000) -> None:
    """Until the script has finished (no "Running..." widget) and every chart on the page is drawn.

    The condition is re-read on each poll (a rerun that starts late on a loaded machine can remove
    charts counted earlier) and must hold twice, 0.5 s apart, so a rerun that had not yet begun
    when it first held is waited for too.
    """
    for _ in range(2):
        time.sleep(0.5)
        page.wait_for_function(_IDLE, timeout=timeout)


def _metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)
    )
    return box.first.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _go(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    _wait_idle(page)


def test_upload_slider_ascent_and_pages(page, server: str, model_dir: Path, shots: Path, tmp_path):
    import upload_samples as samples

    import dsm_core as dc
    from dsm_core.analysis import affine_logp_db
    from dsm_core.images import prepare_upload

    timings = {}
    start = float(os.environ["_DSM_E2E_SERVER_START"])
    page.goto(server)
    page.get_by_role("heading", name="Explore the test set").wait_for(timeout=60_000)
    # the histogram is drawn after the page's first paint: wait for it, then for the script
    page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=60_000)
    _wait_idle(page)
    timings["start_to_first_page_s"] = time.perf_counter() - start
    page.screenshot(path=str(shots / "01_testset.png"))
    model = dc.load_model(model_dir)

    # upload a PNG on the Probe page and read its log p
    _go(page, "Probe an image")
    page.get_by_text("Upload", exact=True).click()
    _wait_idle(page)
    data = samples.png_rgb(96, 128, seed=3)
    (tmp_path / "photo.png").write_bytes(data)
    clicked = time.perf_counter()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        str(tmp_path / "photo.png")
    )
    page.locator('[data-testid="stMetricLabel"]', has_text="log p [dB/dim]").wait_for()
    _wait_idle(page)
    timings["upload_to_logp_s"] = time.perf_counter() - clicked
    _, fitted = prepare_upload(data, "photo.png", model.image_shape)
    expected = float(dc.logp_db(model, fitted.tensor())[0])
    assert _metric(page, "log p [dB/dim]") == f"{expected:+.2f}"
    page.screenshot(path=str(shots / "02_probe_upload.png"))

    # the contrast slider on the Brightness & contrast page (the upload is the current image)
    _go(page, "Brightness & contrast")
    before = _metric(page, "log p(a·x + b) [dB/dim]")
    slider = page.get_by_role("slider").first
    slider.focus()
    moved = time.perf_counter()
    for _ in range(50):  # a: 1.00 -> 0.50 in steps of 0.01
        page.keyboard.press("ArrowLeft")
    x = fitted.tensor()
    target = f"{float(affine_logp_db(model, x, [0.5], [0.0])[0, 0, 0]):+.2f}"
    page.wait_for_function(
        """([label, value]) => [...document.querySelectorAll('[data-testid="stMetric"]')].some(
            m => m.innerText.includes(label) && m.innerText.includes(value))""",
        arg=["log p(a·x + b) [dB/dim]", target],
        timeout=30_000,
    )
    timings["contrast_slider_to_value_s"] = time.perf_counter() - moved
    _wait_idle(page)
    assert _metric(page, "log p(a·x + b) [dB/dim]") == target
    assert before == f"{float(dc.logp_db(model, x)[0]):+.2f}"
    page.screenshot(path=str(shots / "03_contrast.png"))

    # a short gradient ascent
    _go(page, "Gradient ascent / descent")
    run = time.perf_counter()
    page.get_by_role("button", name="Run").click()
    page.locator('[data-testid="stMetricLabel"]', has_text="gain [dB/dim]").wait_for(
        timeout=120_000
    )
    _wait_idle(page)
    timings["ascent_100_steps_s"] = time.perf_counter() - run
    gain = float(_metric(page, "gain [dB/dim]"))
    assert gain >= 0.0 and np.isfinite(gain)
    page.screenshot(path=str(shots / "04_ascent.png"))

    # a long run, stopped early: the best iterate so far is kept
    steps = page.get_by_role("slider").nth(0)
    steps.focus()
    page.keyboard.press("End")  # 1000 steps
    _wait_idle(page)
    page.get_by_role("button", name="Run").click()
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=30_000)
    time.sleep(1.0)
    page.locator("[data-testid=stBaseButton-secondary]", has_text="Stop").click()
    page.get_by_text("Stopped after").first.wait_for(timeout=60_000)
    _wait_idle(page)
    stopped = page.get_by_text("Stopped after").first.inner_text()
    assert "of 1000 steps" in stopped and "Stopped after 1000" not in stopped
    page.screenshot(path=str(shots / "04b_ascent_stopped.png"))

    # switching pages keeps the app alive and the model loaded
    _go(page, "Model")
    assert str(model_dir) in page.locator('[data-testid="stMain"]').inner_text()
    page.screenshot(path=str(shots / "05_model.png"))
    _go(page, "What do these units mean?")
    _go(page, "Explore the test set")
    assert not page.locator('[data-testid="stException"]').count()
    page.screenshot(path=str(shots / "06_back_to_testset.png"))
    (shots / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")


NUM_SESSIONS = 8


def _wait_for_metric(page, label: str, value: str) -> None:
    page.wait_for_function(
        """([label, value]) => [...document.querySelectorAll('[data-testid="stMetric"]')].some(
            m => m.innerText.includes(label) && m.innerText.includes(value))""",
        arg=[label, value],
        timeout=60_000,
    )


def test_eight_sessions_at_once_get_their_own_numbers(browser, server: str, model_dir: Path):
    """Eight browser sessions ask for eight different images without waiting for each other.

    The server runs their scripts at the same time (one thread per session); each page must
    show the log p of its own image, on the Probe page and, from its session state, on the
    Brightness & contrast page.
    """
    import dsm_core as dc
    from dsm_core.images import pixels_to_tensor

    model = dc.load_model(model_dir)
    with np.load(model_dir / "test_images.npz") as archive:
        images = archive["images"][:NUM_SESSIONS]
    expected = [f"{v:+.2f}" for v in dc.logp_db(model, pixels_to_tensor(images)).tolist()]
    assert len(set(expected)) == NUM_SESSIONS, expected  # the sessions are told apart

    pages = [_new_page(browser) for _ in range(NUM_SESSIONS)]
    for page in pages:
        page.goto(server)
    for page in pages:
        page.get_by_role("heading", name="Explore the test set").wait_for(timeout=60_000)
        _go(page, "Probe an image")
    for position, page in enumerate(pages):  # fire all eight, then wait
        box = page.get_by_label("test image", exact=False)
        box.fill(str(position))
        box.press("Enter")
    for page, value in zip(pages, expected, strict=True):
        _wait_for_metric(page, "log p [dB/dim]", value)
    for page in pages:
        page.locator('[data-testid="stSidebarNav"] a', has_text="Brightness & contrast").click()
    for page, value in zip(pages, expected, strict=True):
        _wait_for_metric(page, "log p(a·x + b) [dB/dim]", value)
        _wait_idle(page)
        assert _metric(page, "log p(a·x + b) [dB/dim]") == value
        assert not page.locator('[data-testid="stException"]').count()
        page.context.close()


def _server_rss_bytes() -> int:
    status = Path(f"/proc/{os.environ['_DSM_E2E_SERVER_PID']}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
        * 1024
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_many_large_uploads_keep_server_memory_bounded(browser, server: str, shots: Path, tmp_path):
    """N distinct large PNGs uploaded one after another in one session: the server's resident
    memory stays under its start plus one full-size decode, the decoded-upload cache and the
    capped working copies, however many are uploaded."""
    import upload_samples as samples

    from app.loading import UPLOAD_CACHE_BYTES
    from dsm_core.images import DEFAULT_MAX_DECODED_PIXELS

    side, num = 5000, 10
    page = _new_page(browser)
    page.goto(server)
    page.get_by_role("heading", name="Explore the test set").wait_for(timeout=60_000)
    _go(page, "Probe an image")
    page.get_by_text("Upload", exact=True).click()
    _wait_idle(page)
    before = _server_rss_bytes()
    bound = before + side * side * 4 + UPLOAD_CACHE_BYTES + 6 * DEFAULT_MAX_DECODED_PIXELS * 4
    readings = []
    for seed in range(num):
        path = tmp_path / f"big{seed}.png"
        path.write_bytes(samples.png_large(side, seed))
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
        page.get_by_text(f"big{seed}.png").first.wait_for(timeout=60_000)
        page.locator('[data-testid="stMetricLabel"]', has_text="log p [dB/dim]").wait_for()
        _wait_idle(page)
        assert not page.locator('[data-testid="stException"]').count()
        readings.append(_server_rss_bytes())
    page.screenshot(path=str(shots / "07_large_uploads.png"))
    mib = [round(r / 2**20) for r in readings]
    (shots / "upload_memory.json").write_text(
        json.dumps(
            {
                "before_mib": round(before / 2**20),
                "after_each_mib": mib,
                "bound_mib": round(bound / 2**20),
                "side": side,
                "num": num,
            },
            indent=2,
        )
        + "\n"
    )
    assert max(readings) < bound, (before / 2**20, mib, bound / 2**20)
    page.context.close()
