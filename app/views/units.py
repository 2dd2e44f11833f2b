"""Page 9: what nats, bits/dim and dB/dim mean, with a converter."""

import streamlit as st

from app import components, loading
from dsm_core import units

st.title("What do these units mean?")

d_default = 1024
try:
    d_default = loading.get_bundle(components.current_choice()).model.d
except Exception:  # the converter works without a model
    pass

st.markdown(
    f"""
An image x with d pixel values in [0, 1] (d = C·H·W; here d = {d_default}) gets a probability
**density** p(x). Densities of whole images are astronomically large or small numbers, so they
are always shown through a logarithm:

- **nats**: the natural logarithm, ln p(x) = −U(x), summed over all d dimensions. The energy U
  is what the network outputs.
- **bits/dim**: −log₂ p(x) / d, the negative log-likelihood (NLL) per dimension; it is the
  length, in bits per pixel, of the best possible code for the image under the model.
  1 nat = 1/ln 2 = 1.443 bits.
- **dB/dim** (the paper's unit, §3.2): 10·log₁₀ p(x) / d. **+10 dB/dim means the density is 10^d
  times higher** (for d = {d_default}: a factor 10^{d_default}). 1 bit = 3.01 dB, so
  log p in dB/dim = −3.0103 × NLL in bits/dim.

**Why log p can be positive.** The uniform density on the cube [0, 1]^d is 1 everywhere
(0 dB/dim). Natural images fill a tiny part of that cube, so the density there is much larger
than 1: positive dB/dim. The paper's test-set average on ImageNet64 (grayscale) is +11.4 dB/dim,
i.e. images occupy about 10^(−1.14 d) of the cube.

**The +8 shift.** Real images are stored with 256 levels per pixel. Treating the density as
constant within each bin of width 1/256, the probability of the 8-bit image is p(x)·256^(−d):
its NLL is the continuous NLL **+ 8 bits/dim**. Published NLLs (Table 2) are of this discrete
kind; the app shows both.

**Percentile** (Probe page): the share of held-out images with lower log p, as the coloured
arrows of Fig. 3.
"""
)

st.subheader("Converter")
cols = st.columns(2)
value_db = cols[0].number_input("log p (dB/dim)", value=10.0, step=0.5, key="units_db")
d = cols[1].number_input("dimension d", min_value=1, value=int(d_default), key="units_d")
total_nats = units.db_per_dim_to_nats(value_db, int(d))
nll_bits = -units.db_to_bits(value_db)
m = st.columns(4)
m[0].metric("log p (total) [nats]", f"{total_nats:,.1f}")
m[1].metric("NLL (continuous) [bits/dim]", f"{nll_bits:.4f}")
m[2].metric(
    "NLL (8-bit image) [bits/dim]",
    f"{float(units.discrete_nll_bits_per_dim(-total_nats, int(d))):.4f}",
)
m[3].metric("density p(x)", f"10^{value_db * d / 10:,.1f}")
