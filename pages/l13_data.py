"""L13 - Data pipelines: what goes into the model decides what comes out."""

import streamlit as st

from app import forms, panels, state
from llmfs.config import TrainConfig
from llmfs.recipes import submit_train

KEY = "l13"
DEFAULTS = {"steps": 200, "lr": 3e-4, "eval_every": 25}

st.title("L13 · Data pipelines")
st.markdown("""
A language model becomes what it reads. Raw text from the web or a company's files is full of boilerplate,
near-empty pages, text in other languages, machine-generated spam and the **same document many times over**.
Training on it wastes compute and teaches the model to repeat what it saw most often.

A **data pipeline** turns raw text into training sequences in small, testable steps: read documents, **filter**
them (too short, too repetitive, wrong language; each filter says *why* it dropped a document), **deduplicate**
(exact copies by hashing, near-copies with MinHash), **mix** sources in chosen proportions, **tokenize**, **pack**
the tokens into fixed-length sequences without wasting padding, and write them into **shards** that a training
job streams. Counting what every step keeps and drops tells you whether the pipeline does what you think.

Deduplication matters twice: repeated text is memorised, and a benchmark question that slipped into the training
data makes the evaluation in L14 meaningless (contamination).
""")
st.info("More tools for this lesson are being built: a pipeline builder with filters, deduplication and mixing, "
        "a funnel chart of what each step kept and dropped, and shard writing. For now, train on llmfs-corpus or "
        "on a text file of your own below.", icon=":material/construction:")
panels.default_notice()

left, right = st.columns([1, 2], gap="large")
with left:
    st.subheader("Train")
    cfg = forms.config_form(TrainConfig, key=KEY, defaults=DEFAULTS)
    if forms.start_button(KEY, cfg):
        forms.submit_job(KEY, lambda: submit_train(state.jobs(), cfg, owner=KEY))
with right:
    panels.latest_run_panel(KEY)
