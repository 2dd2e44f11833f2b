"""Page 5: projected gradient ascent / descent of log p in image space (paper Fig. 13, §D.4)."""

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import charts, components
from dsm_core.analysis import (
    default_step_size,
    iter_logp_ascent,
    max_curvature,
    smoothing_finding,
)
from dsm_core.images import pixels_to_tensor, tensor_to_pixels

STEP_MULTIPLIERS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
RESULT = "ascent_result"
CURVATURE_ITERS = 30  # power-iteration steps of max_curvature

st.title("Gradient ascent / descent")
st.markdown(
    "Follow the score ∇ log p(x) from an image, x ← clip(x ± η ∇ log p(x), 0, 1), to find a "
    "nearby image the model finds **more** (ascent) or **less** (descent) probable. **The "
    "paper** (§D.4, Fig. 13, on ImageNet64) runs 1000 steps of η = 10⁻²/d at t = 0: ascent "
    "gives generally smoother images (except near already very probable images, where it fails "
    "to raise log p); descent gives noisier ones. The best iterate is kept; below, the total "
    "variation (mean |difference| of neighbouring pixels) says whether this model did the same, "
    "and the probability-flow ODE checks the one-shot log p of the result."
)

bundle = components.require_bundle()
components.require_energy(bundle)
model = bundle.model
heldout = components.heldout_or_warn(bundle)
image = components.image_picker(bundle, heldout, "ascent")
x = image.tensor()
base_step = default_step_size(model)


def step_ratios(stored: dict, images: torch.Tensor, step_size: float) -> tuple[float, float]:
    """eta * lambda_max at the start and the best iterate (images (2, C, H, W)): whether the step
    was small enough for the curvature it met. Computed once per run and kept with it."""
    if "curvature" not in stored:
        with st.spinner("Curvature of the energy at the start and at the best iterate…"):
            curvature = max_curvature(
                model, images, num_iters=CURVATURE_ITERS, generator=torch.Generator().manual_seed(0)
            )
        stored["curvature"] = curvature.tolist()
    start_ratio, best_ratio = (step_size * c for c in stored["curvature"])
    return start_ratio, best_ratio


def stability_note(start_ratio: float, best_ratio: float) -> None:
    text = (
        f"Step stability: η·λ_max = {start_ratio:.2f} at the start and {best_ratio:.2f} at the "
        "best iterate, where λ_max is the largest curvature of U = −log p there (the dominant "
        f"eigenvalue of ∇²U, {CURVATURE_ITERS} power-iteration steps). Below 2 a step settles "
        "towards a nearby maximum; above 2 it overshoots along that direction and the iterates "
        "oscillate, held in only by the clip to [0, 1] (the paper's “numerical instabilities "
        "around high-probability images”)."
    )
    if min(start_ratio, best_ratio) < 0:
        text += (
            " A negative value means U curves downwards along its stiffest direction: there the "
            "step leaves rather than settles."
        )
    (st.info if max(start_ratio, best_ratio) > 2 else st.caption)(text)


# Not a fragment, on purpose: a click on Stop must interrupt the running loop, and Streamlit
# queues a fragment's rerun until the fragment's current run has finished (streamlit#11030),
# whereas a full rerun request interrupts the script at its next st call. The partial result is
# kept in Session State as the loop goes, so the interrupted run still shows its best iterate.
def ascent_panel() -> None:
    cols = st.columns([1, 2, 2])
    direction = cols[0].radio("direction", ["ascent", "descent"], key="ascent_direction")
    num_steps = cols[1].slider("steps", 10, 1000, 100, step=10, key="ascent_steps")
    multiplier = cols[2].select_slider(
        "step size η (× 10⁻²/d)",
        options=list(STEP_MULTIPLIERS),
        value=1.0,
        key="ascent_step_multiplier",
        help=f"η = multiplier × {base_step:.2e} (the paper's 10⁻²/d for d = {model.d}), "
        "applied to ∇ log p in nats. Larger steps go further in fewer steps but overshoot where "
        "η·λ_max > 2 (shown after a run); on smooth images even the paper's step can.",
    )
    step_size = float(multiplier) * base_step
    settings = (bundle.key, image.digest, direction, num_steps, step_size)
    buttons = st.columns([1, 1, 4])
    run = buttons[0].button("Run", key="ascent_run", type="primary")
    stop = buttons[1].button("Stop", key="ascent_stop")
    stored = st.session_state.get(RESULT)
    if stop and stored is not None and not stored["finished"]:
        stored["stopped"] = True
    if run:
        bar = st.progress(0.0, text="steps")
        live = st.columns([1, 3])
        image_slot, chart_slot = live[0].empty(), live[1].empty()
        every = max(1, num_steps // 25)
        result = {
            "settings": settings,
            "steps": [],
            "logp": [],
            "best_image": None,
            "best_logp": None,
            "best_step": 0,
            "finished": False,
            "stopped": False,
            "total": num_steps,
        }
        st.session_state[RESULT] = result
        better = np.greater if direction == "ascent" else np.less
        for item in iter_logp_ascent(
            model, x, num_steps=num_steps, step_size=step_size, direction=direction
        ):
            value = float(item.logp_db[0])
            result["steps"].append(item.step)
            result["logp"].append(value)
            if result["best_logp"] is None or better(value, result["best_logp"]):
                result["best_image"] = tensor_to_pixels(item.image[0])
                result["best_logp"], result["best_step"] = value, item.step
            if item.step % every == 0 or item.step == num_steps:
                bar.progress(item.step / num_steps, text=f"step {item.step}/{num_steps}")
                image_slot.image(
                    components.display_tensor(item.image[0], 160),
                    caption=f"step {item.step}: {value:+.2f} dB/dim",
                    width=160,
                )
                chart_slot.plotly_chart(
                    charts.ascent_curve(np.array(result["steps"]), np.array(result["logp"]), None),
                    key=f"ascent_live_{item.step}",
                )
        result["finished"] = True
        bar.empty()
        image_slot.empty()
        chart_slot.empty()
    stored = st.session_state.get(RESULT)
    if stored is None or stored["settings"] != settings or not stored["steps"]:
        st.caption("Press **Run**; **Stop** keeps the best iterate found so far.")
        return
    start, best = stored["logp"][0], stored["best_logp"]
    start_x = pixels_to_tensor(image.pixels[None])
    best_x = pixels_to_tensor(stored["best_image"][None])
    # the step's stability concerns ascent (a descent step on log p is meant to move away)
    ascent = direction == "ascent"
    ratios = step_ratios(stored, torch.cat([start_x, best_x]), step_size) if ascent else None
    done = stored["steps"][-1]
    if not stored["finished"]:
        st.warning(f"Stopped after {done} of {stored['total']} steps.")
    cols = st.columns([1, 1, 2])
    with cols[0]:
        components.show_image(image.pixels, caption=f"start: {start:+.2f} dB/dim", size=160)
    with cols[1]:
        components.show_image(
            stored["best_image"],
            caption=f"best (step {stored['best_step']}): {best:+.2f} dB/dim",
            size=160,
        )
    with cols[2]:
        st.metric(
            ("gain" if direction == "ascent" else "change") + " [dB/dim]",
            f"{best - start:+.2f}",
            help="log p of the best iterate minus log p of the start.",
        )
        change = stored["best_image"].astype(np.float64) - image.pixels.astype(np.float64)
        rms = float(np.sqrt(np.mean((change / 255.0) ** 2)))
        if rms > 0:
            st.caption(
                f"The best iterate differs from the start by an RMS of {rms:.3f} "
                f"(PSNR {-20 * np.log10(rms):.1f} dB)."
            )
        else:
            st.caption(
                "No step improved on the start: "
                + (
                    "the step overshoots here (η·λ_max > 2, below): try a smaller step size."
                    if ascent and ratios[0] > 2
                    else "try a larger step size."
                )
            )
    smooth = smoothing_finding(start_x, best_x, direction)
    start_tv, best_tv = float(smooth.start_tv[0]), float(smooth.result_tv[0])
    expected = "smoother" if direction == "ascent" else "noisier"
    components.verdict(
        bool(smooth.agrees[0]),
        f"The paper's {direction} makes images {expected}; here the total variation went from "
        f"{start_tv:.4f} to {best_tv:.4f} ("
        + (
            "unchanged: no step improved on the start"
            if best_tv == start_tv
            else "smoother"
            if best_tv < start_tv
            else "rougher"
        )
        + ").",
    )
    if ascent:
        stability_note(*ratios)
    actions = st.columns([1, 1, 1, 3])
    with actions[0]:
        components.probe_button(
            stored["best_image"],
            f"{direction} best (step {stored['best_step']})",
            "Gradient ascent / descent",
            "ascent_probe",
        )
    with actions[1]:
        components.download_png(stored["best_image"], f"{direction}_best.png", "ascent_png")
    with actions[2]:
        curve = pd.DataFrame({"step": stored["steps"], "logp_db": stored["logp"]})
        components.download_csv(curve, f"{direction}_logp.csv", "ascent_csv", "curve (CSV)")
    components.ode_check_panel(
        bundle,
        heldout,
        torch.cat([start_x, best_x]),
        ["start", f"best (step {stored['best_step']})"],
        "ascent",
    )
    plots = st.columns(2)
    plots[0].plotly_chart(
        charts.ascent_curve(
            np.array(stored["steps"]), np.array(stored["logp"]), stored["best_step"]
        ),
        key="ascent_curve",
    )
    plots[1].plotly_chart(
        charts.signed_map(
            change.mean(axis=0) / 255.0,
            title="best − start (intensity)",
            colorbar_title="Δ",
        ),
        key="ascent_difference",
    )


ascent_panel()
