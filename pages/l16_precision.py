"""L16 - Mixed precision: the same training in fewer bits."""

import streamlit as st

from app import panels

KEY = "l16"
DEFAULTS = {"steps": 200, "lr": 3e-4, "eval_every": 25}

st.title("L16 · Mixed precision")
st.markdown("""
By default every number in training is a 32-bit float (**fp32**). Most of the work does not need that much
precision. **Mixed precision** runs the big matrix multiplications in 16 bits while keeping a 32-bit master copy
of the weights: activations take half the memory and modern GPUs multiply 16-bit numbers several times faster.

There are two 16-bit formats. **fp16** has fine precision but a small range: tiny gradients round to zero, so
training needs **loss scaling** (multiply the loss before the backward pass, divide the gradients after, and skip
a step whenever something overflowed). **bf16** keeps fp32's range with less precision, so it needs no scaler;
it needs a recent GPU (NVIDIA Ampere or newer).

In production this is usually the cheapest speed-up there is, and memory saved becomes a bigger batch or a
bigger model. Watch the memory and tokens-per-second charts when you compare precisions.
""")
st.info("More tools for this lesson are being built: fp32, fp16 and bf16 runs side by side, the loss-scale chart "
        "and memory estimates before you run. For now, train in fp32 below and note its memory and speed.",
        icon=":material/construction:")
panels.default_notice()

panels.training_section(KEY, DEFAULTS)
