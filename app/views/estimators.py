"""Page 6: the one-shot energy vs the ODE, denoising-bound and SDE estimates of log p (§A.2)."""

import math
import time

import pandas as pd
import streamlit as st
import torch

from app import charts, components
from dsm_core import units
from dsm_core.analysis import (
    GAP_BAND_EDGES,
    mse_nll_nats,
    ode_gap_profile,
    ode_nll_nats,
    sde_nll_nats,
)
from dsm_core.explore import logp_report

RESULT = "estimators_result"
PATH_RESULT = "estimators_ode_path"

st.title("Compare estimators")
st.markdown(
    "A diffusion model's log p(x) needs an integral over noise levels; this energy model gives "
    "it in **one forward pass**. Compare, for one image (paper §A.2):\n"
    "- **one-shot energy** −U(x, 0) (this model's normalised energy, eq. 9);\n"
    "- **probability-flow ODE** (eqs. 13–14): integrate dx/dt = ∇U/2 from the image to pure "
    "noise and accumulate the Laplacian (Hutchinson's estimator);\n"
    "- **MSE bound** (eq. 16): integrate the denoising error d − d_eff(x, t) over log t; an upper "
    "bound on −log p in expectation;\n"
    "- optionally the **SDE / Itô** estimate along noisy paths (eqs. 17–18).\n\n"
    "They agree when the model is consistent across noise levels, which dual score matching "
    "enforces. Values in dB/dim (higher = more probable)."
)

bundle = components.require_bundle()
components.require_energy(bundle)
model = bundle.model
heldout = components.heldout_or_warn(bundle)
image = components.image_picker(bundle, heldout, "estimators")
x = image.tensor()

with st.expander("Settings (defaults finish in a few seconds on a CPU)", expanded=False):
    cols = st.columns(4)
    ode_steps = cols[0].slider("ODE steps (RK4)", 5, 100, 20, key="est_ode_steps")
    ode_probes = cols[0].slider("Hutchinson probes", 1, 8, 2, key="est_ode_probes")
    mse_points = cols[1].slider("MSE: noise levels", 9, 129, 33, step=8, key="est_mse_points")
    mse_noise = cols[1].slider("MSE: draws per level", 1, 32, 4, key="est_mse_noise")
    use_sde = cols[2].checkbox("include the SDE estimate", value=False, key="est_sde")
    sde_steps = cols[2].slider("SDE steps", 50, 1000, 200, step=50, key="est_sde_steps")
    sde_paths = cols[2].slider("SDE paths", 1, 16, 4, key="est_sde_paths")
    prior = cols[3].radio(
        "prior at t_max",
        ["gaussian", "model"],
        key="est_prior",
        help="gaussian: N(0, t_max I), the paper's eqs. 14/16/18; model: the model's own "
        "normalised energy at t_max (eq. 15).",
    )
    seed = cols[3].number_input("seed", 0, 10_000, 0, key="est_seed")

settings = (
    bundle.key,
    image.digest,
    ode_steps,
    ode_probes,
    mse_points,
    mse_noise,
    use_sde,
    sde_steps,
    sde_paths,
    prior,
    seed,
)
if st.button("Run the estimators", key="est_run", type="primary"):
    rows = []
    start = time.perf_counter()
    report = logp_report(model, x)
    rows.append(
        {
            "estimator": "one-shot energy",
            "logp_db": float(report.logp_db[0]),
            "stderr_db": None,  # deterministic
            "evaluations": 1,
            "seconds": time.perf_counter() - start,
        }
    )
    jobs = [
        (
            "probability-flow ODE",
            lambda p: ode_nll_nats(
                model,
                x,
                num_steps=ode_steps,
                num_probes=ode_probes,
                prior=prior,
                generator=torch.Generator().manual_seed(int(seed)),
                progress=p,
            ),
        ),
        (
            "MSE bound",
            lambda p: mse_nll_nats(
                model,
                x,
                num_points=mse_points,
                num_noise=mse_noise,
                prior=prior,
                generator=torch.Generator().manual_seed(int(seed)),
                progress=p,
            ),
        ),
    ]
    if use_sde:
        jobs.append(
            (
                "SDE (Itô)",
                lambda p: sde_nll_nats(
                    model,
                    x,
                    num_steps=sde_steps,
                    num_paths=sde_paths,
                    prior=prior,
                    generator=torch.Generator().manual_seed(int(seed)),
                    progress=p,
                ),
            )
        )
    for name, job in jobs:
        bar = st.progress(0.0, text=name)
        estimate = job(components.progress_callback(bar, name))
        bar.empty()
        stderr_db = float(units.nats_to_db_per_dim(estimate.stderr_nats[0], estimate.d))
        rows.append(
            {
                "estimator": name,
                "logp_db": float(estimate.logp_db[0]),
                "stderr_db": stderr_db,
                "evaluations": estimate.num_score_evals + estimate.num_hvp_evals,
                "seconds": estimate.wall_seconds,
            }
        )
    st.session_state[RESULT] = (settings, rows)


def _stderr_text(stderr_db: float | None) -> str:
    if stderr_db is None:
        return "— (deterministic)"
    if not math.isfinite(stderr_db):
        return "n/a (needs ≥ 2 probes or draws)"
    return f"{stderr_db:.3f}"


stored = st.session_state.get(RESULT)
if stored is None or stored[0] != settings:
    st.caption("Press **Run the estimators** (the one-shot value alone is on *Probe an image*).")
    st.stop()
rows = stored[1]
table = pd.DataFrame(
    {
        "estimator": [r["estimator"] for r in rows],
        "log p (dB/dim)": [r["logp_db"] for r in rows],
        "± s.e. (dB/dim)": [_stderr_text(r["stderr_db"]) for r in rows],
        "NLL (bits/dim)": [-units.db_to_bits(r["logp_db"]) for r in rows],
        "network evaluations": [r["evaluations"] for r in rows],
        "wall time (s)": [r["seconds"] for r in rows],
    }
)
st.dataframe(
    table,
    hide_index=True,
    key="est_table",
    column_config={
        "log p (dB/dim)": st.column_config.NumberColumn(format="%+.3f"),
        "NLL (bits/dim)": st.column_config.NumberColumn(format="%.4f"),
        "wall time (s)": st.column_config.NumberColumn(format="%.3f"),
    },
)
st.caption(
    "Network evaluations: gradient evaluations ∇U (a forward and a backward pass each) plus "
    "Hessian-vector products for the ODE's Laplacian; the one-shot energy is one forward pass. "
    "NLL here is of the continuous density; add 8 bits/dim for 8-bit images. The ODE's standard "
    "error needs at least 2 Hutchinson probes."
)
st.plotly_chart(
    charts.estimator_points(
        [r["estimator"] for r in rows],
        [r["logp_db"] for r in rows],
        [r["stderr_db"] for r in rows],
    ),
    key="est_points",
)

st.subheader("Where do one-shot and ODE part?")
st.markdown(
    "The two agree only if U(y, t) obeys the heat equation "
    "∂U/∂t = (ΔU − ‖∇U‖²)/2 at every noise level the ODE passes through. Trace the ODE's own "
    "path: at each noise level t, the one-shot log p_t of the path point (the energy alone) "
    "minus the ODE's log p_t of it (the rest of the integral). It ends near 0 at t_max (the "
    "prior against the model's own energy there) and starts, at t = 0 (off this log axis, one "
    "Heun step below the trained floor), at the one-shot − ODE difference in the table; where it "
    "rises or falls is the band of t where this model breaks the heat equation for this image. "
    "Not in the paper."
)
if st.button("Trace the ODE's path", key="est_path_run"):
    bar = st.progress(0.0, text="ODE path")
    profile = ode_gap_profile(
        model,
        x,
        num_steps=ode_steps,
        num_probes=ode_probes,
        prior=prior,
        generator=torch.Generator().manual_seed(int(seed)),
        progress=components.progress_callback(bar, "ODE path"),
    )
    bar.empty()
    st.session_state[PATH_RESULT] = (settings, profile)
path_stored = st.session_state.get(PATH_RESULT)
if path_stored is not None and path_stored[0] == settings:
    profile = path_stored[1]
    gap = profile.gap_db[1:, 0].numpy()  # rows at t > 0
    st.plotly_chart(
        charts.ode_gap_path(
            profile.t[1:], gap, profile.ode_stderr_db[1:, 0].numpy(), float(model.t_min)
        ),
        key="est_path_chart",
    )
    low, high = GAP_BAND_EDGES
    parts = profile.gap_by_band((low, high))[:, 0].tolist()
    st.caption(
        f"One-shot − ODE of this image {float(profile.gap_db[0, 0]):+.2f} dB/dim, formed at "
        f"0 ≤ t < {low:g}: {parts[0]:+.2f}, {low:g} ≤ t < {high:g}: {parts[1]:+.2f}, t ≥ {high:g} "
        f"(with the prior at t_max): {parts[2]:+.2f}."
    )
