"""Latency of what the app computes per user action, and its cold start, against the issue's bars.

On the default model (``--model``) with one torch thread, alternating in one run:

- upload -> log p: PNG bytes (``--upload-size``, a photo-like RGB image) through the app's
  upload path (``dsm_core.images.prepare_upload`` = ``decode_upload`` + ``fit_to_model``, which
  ``app.loading.decode`` and ``app.components.uploaded_image`` call; then ``pixels_to_tensor``)
  to the Probe page's ``logp_report`` (log p in every unit and the test-set percentile), its
  dequantized 8-bit NLL bound and its thumbnail; also timed apart: decode + fit, and the log p
  alone.
- slider move on *Brightness & contrast*: what the page's fragment computes, log p(a x + b) at the
  slider values and the two 21-point slices (``affine_logp_db``, ``contrast_slice_logp_db``),
  of which only the points with a x + b inside [0, 1] are scored (``affine_in_range``);
  also with the page's three Plotly figures built (``app.charts``). The 21 x 21 grid the page
  computes once per image is timed too (not per slider move).
- one gradient-ascent step: one item of ``dsm_core.analysis.iter_logp_ascent`` (energy and
  scores of the image, the update), the page's step size (10 x 1e-2/d).
- cold start: ``streamlit run app/main.py --server.headless true --server.port PORT`` (localhost)
  until ``/`` answers HTTP 200, and, driving /usr/bin/chromium with Playwright (launched before
  the server, as tests/e2e does), until the first page's title "Explore the test set" and its
  section "Which images are probable?" are in the page.

Each round times ``--repeats`` single calls of each in-process action (one call per sample: the
latency a user sees) and one cold start; ``--rounds`` rounds; medians are reported. Not included:
Streamlit's rerun, websocket and browser drawing around a slider move (tests/e2e/test_browser.py
measures those end to end).

Bars (issue 7): log p of one image < 100 ms, slider update < 300 ms, start < 10 s. The last line
printed is ``budget_ratio: X``, X = the largest of (median / bar) over the three, so X < 1 means
every bar is met.

Examples:
    python bench/app_latency.py
    python bench/app_latency.py --rounds 1 --no-browser
"""

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from _common import (
    add_threads_arg,
    fmt_ratio,
    free_port,
    load_note,
    median,
    print_run_footer,
    set_threads,
    time_alternating,
)
from PIL import Image

import dsm_core
from dsm_core.analysis import (
    affine_in_range,
    affine_logp_db,
    affine_logp_db_grid,
    contrast_slice_logp_db,
    default_step_size,
    dequantized_nll_bits_per_dim,
    iter_logp_ascent,
)
from dsm_core.explore import logp_report
from dsm_core.images import pixels_to_tensor, prepare_upload, tensor_to_pixels, thumbnail
from dsm_core.packaging import load_heldout

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # app/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))
from app import charts  # noqa: E402

DEFAULT_MODEL = "checkpoints/default"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
TITLE, CONTENT = "Explore the test set", "Which images are probable?"
# the page's constants (app/views/affine.py, app/views/ascent.py)
GRID_SIZE, SLICE_SIZE, ASCENT_MULTIPLIER = 21, 21, 10.0
BARS_S = {"upload -> log p": 0.100, "slider (model + figures)": 0.300, "start -> content": 10.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Time the app's per-action computations (upload -> log p, a brightness/contrast "
            "slider move, one gradient-ascent step) and its cold start against the issue's bars. "
            "Last line: 'budget_ratio: X' (worst median / its bar)."
        )
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model folder (default model)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, one cold start each")
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed calls of each action per round"
    )
    parser.add_argument(
        "--upload-size", default="640x480", help="width x height of the PNG (default 640x480)"
    )
    parser.add_argument("--no-start", action="store_true", help="skip the cold starts")
    parser.add_argument(
        "--no-browser", action="store_true", help="cold start: HTTP 200 only (no Playwright)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="cold start timeout (s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the uploaded image")
    add_threads_arg(parser)
    return parser.parse_args(argv)


def photo_png(width: int, height: int, seed: int) -> bytes:
    """A photo-like RGB PNG: smooth random shapes plus fine grain (so it does not compress away)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC))
    grain = rng.normal(0.0, 6.0, size=smooth.shape)
    pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------ cold start


def cold_start(args: argparse.Namespace, browser) -> dict[str, float]:
    """Seconds from launching the app to HTTP 200 on / and (with a browser) to its content."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        DSM_MODEL=str(Path(args.model).resolve()),
        DSM_TORCH_THREADS=str(args.threads),
        HF_HUB_OFFLINE="1",
        STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
    )
    command = [sys.executable, "-m", "streamlit", "run", "app/main.py"]
    command += ["--server.headless", "true", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1"]
    out: dict[str, float] = {}
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = start + args.timeout
            while True:
                try:
                    with urllib.request.urlopen(url + "/", timeout=1) as reply:
                        if reply.status == 200:
                            out["http_200"] = time.perf_counter() - start
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.perf_counter() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"streamlit did not answer on {url}:\n{tail}")
                time.sleep(0.02)
            if browser is not None:
                context = browser.new_context(viewport={"width": 1400, "height": 1600})
                try:
                    page = context.new_page()
                    page.goto(url)
                    timeout_ms = max(1.0, deadline - time.perf_counter()) * 1e3
                    page.get_by_role("heading", name=TITLE).first.wait_for(timeout=timeout_ms)
                    out["title"] = time.perf_counter() - start
                    page.get_by_text(CONTENT).first.wait_for(timeout=timeout_ms)
                    out["content"] = time.perf_counter() - start
                finally:
                    context.close()
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return out


def launch_browser(args: argparse.Namespace):
    """(playwright, browser) or (None, None) with the reason printed."""
    if args.no_browser or args.no_start:
        return None, None
    if not CHROMIUM.exists():
        print(f"no {CHROMIUM}: cold start measured to HTTP 200 only")
        return None, None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed: cold start measured to HTTP 200 only")
        return None, None
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    return playwright, browser


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_wall = time.perf_counter()
    load_before = load_note()
    set_threads(args.threads)
    width, height = (int(v) for v in args.upload_size.lower().split("x"))
    model = dsm_core.load_model(args.model)
    heldout = load_heldout(args.model, model.image_shape)
    png = photo_png(width, height, args.seed)
    shape = tuple(model.image_shape)

    # upload -> log p (app/views/probe.py)
    def upload_fit() -> torch.Tensor:
        _, fitted = prepare_upload(png, "upload.png", shape)
        return pixels_to_tensor(fitted.pixels[None])  # CurrentImage.tensor()

    def upload_logp() -> float:
        decoded, fitted = prepare_upload(png, "upload.png", shape)
        x = pixels_to_tensor(fitted.pixels[None])
        report = logp_report(model, x, heldout.logp_db)
        dequantized_nll_bits_per_dim(  # the page's 8-bit NLL bound
            model,
            torch.from_numpy(fitted.pixels[None].astype(np.int64)),
            generator=torch.Generator().manual_seed(0),
        )
        thumbnail(decoded.pixels, 256)
        return float(report.logp_db[0])

    x = upload_fit()  # (1, C, H, W): the image of the other pages too

    def logp_only() -> float:
        return float(logp_report(model, x, heldout.logp_db).logp_db[0])

    # a slider move on the Brightness & contrast page (app/views/affine.py, affine_panel)
    a_grid = np.linspace(0.0, 1.0, GRID_SIZE)
    b_grid = np.linspace(0.0, 1.0, GRID_SIZE)
    a_line = np.linspace(0.0, 1.5, SLICE_SIZE)
    b_line = np.linspace(-0.5, 1.0, SLICE_SIZE)
    a, b = 0.5, 0.1

    def grid() -> np.ndarray:
        return affine_logp_db_grid(model, x, a_grid, b_grid).numpy()

    grid_values = grid()

    def slider_model() -> tuple:
        current = float(affine_logp_db(model, x, [a], [b])[0, 0, 0])
        transformed = a * x[0] + b
        bool((transformed < 0).any() or (transformed > 1).any())
        tensor_to_pixels(transformed)
        # only the a x + b inside [0, 1] are scored (NaN elsewhere), as the page does
        inside_a = affine_in_range(x, a_line, [b])[0, :, 0].numpy()
        along_a = np.full(SLICE_SIZE, np.nan)
        along_a[inside_a] = contrast_slice_logp_db(model, x, a_line[inside_a], b)[0].numpy()
        inside_b = affine_in_range(x, [a], b_line)[0, 0].numpy()
        along_b = np.full(SLICE_SIZE, np.nan)
        along_b[inside_b] = affine_logp_db(model, x, [a], b_line[inside_b])[0, 0].numpy()
        return current, along_a, along_b

    def slider_figures() -> None:
        current, along_a, along_b = slider_model()
        charts.affine_heatmap(a_grid, b_grid, grid_values, (a, b))
        charts.line_with_marker(a_line, along_a, a, current, title="a", x_title="a")
        charts.line_with_marker(b_line, along_b, b, current, title="b", x_title="b")

    # one gradient-ascent step (app/views/ascent.py)
    steps = iter_logp_ascent(
        model, x, num_steps=10**9, step_size=ASCENT_MULTIPLIER * default_step_size(model)
    )
    next(steps)  # step 0: the start image

    def ascent_step() -> None:
        next(steps)

    actions = {
        "upload -> log p": upload_logp,
        "  decode + fit": upload_fit,
        "  log p (logp_report)": logp_only,
        "slider (model)": slider_model,
        "slider (model + figures)": slider_figures,
        "ascent step": ascent_step,
        "grid 21x21 (once per image)": grid,
    }

    playwright, browser = launch_browser(args)
    times: dict[str, list[float]] = {name: [] for name in actions}
    starts: list[dict[str, float]] = []
    try:
        for i in range(args.rounds):
            for name, values in time_alternating(actions, args.repeats).items():
                times[name] += values
            if not args.no_start:
                starts.append(cold_start(args, browser))
                shown = ", ".join(f"{k} {v:.2f} s" for k, v in starts[-1].items())
                print(f"  round {i + 1}: cold start {shown}", flush=True)
    finally:
        steps.close()
        if browser is not None:
            browser.close()
            playwright.stop()

    medians = {name: median(values) for name, values in times.items()}
    for key, label in (("http_200", "start -> HTTP 200"), ("title", "start -> title")):
        if starts and key in starts[0]:
            medians[label] = median([s[key] for s in starts])
    if starts and "content" in starts[0]:
        medians["start -> content"] = median([s["content"] for s in starts])

    print()
    c, h, w = shape
    print(
        f"model {args.model} ({sum(p.numel() for p in model.parameters()):,} params, {c}x{h}x{w}), "
        f"threads {args.threads}; upload: {width}x{height} RGB PNG ({len(png) / 1024:.0f} KiB)"
    )
    print(
        f"{args.rounds} round(s): {args.repeats} single calls of each action per round, "
        "alternating; one cold start per round"
    )
    print()
    header = f"{'action':<32} {'n':>4} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'bar':>8}"
    print(header)
    print("-" * len(header))
    for name, values in times.items():
        ms = [1e3 * v for v in values]
        bar = f"{1e3 * BARS_S[name]:.0f} ms" if name in BARS_S else ""
        print(
            f"{name:<32} {len(ms):>4} {median(ms):>10.1f} {min(ms):>9.1f} {max(ms):>9.1f} {bar:>8}"
        )
    if starts:
        for key, label in (
            ("http_200", "start -> HTTP 200 on /"),
            ("title", f'start -> "{TITLE}"'),
            ("content", "start -> content"),
        ):
            if key not in starts[0]:
                continue
            ms = [1e3 * s[key] for s in starts]
            bar = f"{BARS_S['start -> content']:.0f} s" if key == "content" else ""
            print(
                f"{label:<32} {len(ms):>4} {median(ms):>10.0f} {min(ms):>9.0f} {max(ms):>9.0f} "
                f"{bar:>8}"
            )
        if "content" in starts[0]:
            print(f'(content = the text "{CONTENT}" rendered in Chromium)')

    print()
    ratios = {name: medians[name] / bar for name, bar in BARS_S.items() if name in medians}
    if "start -> content" not in medians and "start -> HTTP 200" in medians:
        # without a browser, HTTP 200 is the closest (optimistic) stand-in for the start bar
        ratios["start -> HTTP 200"] = medians["start -> HTTP 200"] / BARS_S["start -> content"]
    for name, ratio in ratios.items():
        verdict = "meets" if ratio < 1 else "MISSES"
        print(f"{name}: {ratio:.2f} of its bar ({verdict} it)")
    print()
    print_run_footer(load_before, start_wall)
    print(f"budget_ratio: {fmt_ratio(max(ratios.values()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
