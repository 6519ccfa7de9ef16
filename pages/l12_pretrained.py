"""L12 - Pretrained weights: start from what a model already knows instead of from random numbers."""

import streamlit as st

from app import forms, panels, state
from llmfs.config import TrainConfig
from llmfs.recipes import submit_train

KEY = "l12"
DEFAULTS = {"steps": 200, "lr": 3e-4, "eval_every": 25}

st.title("L12 · Pretrained weights")
st.markdown("""
A model's **weights** are everything it has learned. Training them from random numbers (pretraining) takes
enormous amounts of text and compute: GPT-2 small read about 40 GB of web pages. Almost nobody does that in
production. Instead you **download weights someone else pretrained** and continue from there (fine-tuning): the
model already knows spelling, grammar and a lot about the world, and your data only has to teach it your task.

To load someone else's weights into your own model code, the two must agree on every tensor's **name and shape**.
Our GPT uses Hugging Face GPT-2's parameter names, so loading `gpt2` is a name table plus a transpose of four
matrices that GPT-2 stores the other way round. A model whose vocabulary is too small for your tokenizer gets its
embedding table **resized**, and you can **freeze** layers so that only some of them train.

Try it below: train llmfs-tiny with **Initial weights** = `pretrained`, then again with `random`, and compare the
two on the Runs page. The held-out loss shows what pretraining is worth before a single step of fine-tuning.
""")
st.info("More tools for this lesson are being built: loading and inspecting a Hugging Face model or folder, "
        "freezing strategies, and a pretrained-vs-random comparison in one click.", icon=":material/construction:")
panels.default_notice()

left, right = st.columns([1, 2], gap="large")
with left:
    st.subheader("Train")
    cfg = forms.config_form(TrainConfig, key=KEY, defaults=DEFAULTS)
    if forms.start_button(KEY, cfg):
        forms.submit_job(KEY, lambda: submit_train(state.jobs(), cfg, owner=KEY))
with right:
    panels.latest_run_panel(KEY)
