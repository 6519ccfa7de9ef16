"""L15 - LoRA and QLoRA: fine-tuning a big model by training a small one beside it."""

import streamlit as st

from app import panels

KEY = "l15"
DEFAULTS = {"steps": 200, "lr": 3e-4, "eval_every": 25}

st.title("L15 · LoRA & QLoRA")
st.markdown("""
Fine-tuning every weight of a large model needs memory for the weights, their gradients and two optimizer values
per weight: about four copies of the model. **LoRA** (low-rank adaptation) freezes the original weights and learns
a small correction beside chosen matrices: two thin matrices `B·A` of rank *r* (often 8 or 16), scaled by
*alpha / r*. Typically well under 1% of the parameters train, the optimizer state shrinks with them, and the result
is an **adapter** of a few megabytes that can be swapped per task or merged back into the weights.

**QLoRA** goes further: the frozen base model is stored in **4-bit** (the NF4 format) and only the small LoRA
matrices train in 16-bit. That is how a model that needs a data-centre GPU to fine-tune in full fits on one
consumer GPU, at a small cost in speed and accuracy.

The questions in production: which layers get adapters, what rank is enough, and how close LoRA gets to full
fine-tuning on your task, at what fraction of the memory.
""")
st.info("More tools for this lesson are being built: LoRA settings (rank, alpha, target layers) with trainable "
        "parameter counts, saving and merging adapters in PEFT's format, and 4-bit QLoRA on a GPU. For now, run a "
        "full fine-tune below: it is the baseline LoRA is measured against.", icon=":material/construction:")
panels.default_notice()

panels.training_section(KEY, DEFAULTS)
