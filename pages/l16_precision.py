"""L16 - Mixed precision: the same training in fewer bits, and when that makes it faster."""

import streamlit as st

from app import formats_view as fv
from app import forms, panels, run_panels, settings_view
from app import precision_view as pv
from llmfs.config import TrainConfig
from llmfs.precision import format_table

KEY = "l16"
START = "Compare the precisions"

st.title("L16 · Mixed precision")
st.markdown("""
By default every number in training is a 32-bit float (**fp32**). Most of the work does not need that much
precision. **Mixed precision** runs the big matrix multiplications in 16 bits while keeping 32-bit master weights.
The promise, *train 2-3× faster with half the memory*, holds **on a GPU with tensor cores** (which multiply 16-bit
numbers several times faster), **for models big enough to keep them busy**, and the memory halves only for what is
stored in 16 bits: the activations. This page shows each part: the formats, why fp16 needs loss scaling, and the
same run in each precision side by side.
""")
panels.default_notice()

with panels.stage("1 · Number formats", """
A float stores a **sign**, an **exponent** (how big: the range) and a **mantissa** (the digits: the precision).

**fp16** has 5 exponent bits: numbers above 65,504 become *inf* (**overflow**) and below about 6e-8 become 0
(**underflow**). Its 10 mantissa bits keep about 3 decimal digits.

**bf16** (brain float) keeps fp32's 8 exponent bits, so it has fp32's range, and pays with 7 mantissa bits (about 2
digits). Gradients are often tiny, so range matters more than digits: that is why bf16 needs no loss scaling.

Type your own numbers below and see what each format keeps.
"""):
    formats = format_table()
    st.plotly_chart(fv.bits_figure(formats), key="l16-bits", config=pv.PLOT_CONFIG)
    st.dataframe(fv.formats_frame(formats), hide_index=True, column_config=fv.FORMAT_COLUMNS)
st.markdown("##### Try your own numbers")
fv.explorer(KEY)

st.divider()
with panels.stage("2 · Why fp16 needs loss scaling", """
Late in training the loss is small and so are many **gradients**: often below 6e-8, where fp16 rounds them to
**zero**. A weight whose gradient is zero does not learn.

**Loss scaling** multiplies the loss by a big number S (a power of two) before the backward pass, so every gradient
is S times bigger and lands inside fp16's range; the gradients are divided by S again (**unscaled**) before the
optimizer step, so the update is unchanged.

PyTorch's **GradScaler** picks S for you: it starts at 2^16; when a scaled gradient overflows to inf it **skips that
step** and **halves** S; after 2,000 good steps in a row it **doubles** S. bf16 does not need it.
"""):
    pv.underflow_section(KEY)

st.divider()
with panels.stage("3 · Compare precisions on your model", """
The **same** training (model, data, seed, steps) once per precision, one run after the other, so they never compete
for the machine. Then compare speed (tokens per second), memory and the loss reached.

**What to expect**: on a GPU with tensor cores (NVIDIA Volta and newer for fp16, Ampere and newer for bf16) a model
big enough to keep them busy trains about 2-3× faster in fp16 or bf16, and the loss tracks fp32's. On a CPU, or with
a model as small as llmfs-tiny, the speed-up shrinks or disappears.

**TF32** (advanced) runs fp32 matmuls on Ampere tensor cores with fewer mantissa bits: most of the speed, no code
change; on a CPU it has no effect.
"""):
    modes = pv.modes_picker(KEY)
    cfg = forms.config_form(TrainConfig, key=KEY, defaults=pv.DEFAULTS, fields=pv.FIELDS)
    ok = cfg is not None and bool(modes) and pv.plan_notes(cfg, modes)
    if cfg is not None:
        pv.estimate_section(cfg, modes)
    pv.machine_note()
    settings_view.settings_files(TrainConfig, KEY, cfg, page="l16")
    name = run_panels.run_name_input(KEY, label="Name for the comparison (optional)")
    if forms.start_button(KEY, cfg if ok else None, label=START):
        pv.submit(KEY, cfg, modes, name)

st.divider()
st.subheader("Runs and results")
pv.comparison_section(KEY, START)
