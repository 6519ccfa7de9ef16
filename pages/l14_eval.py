"""L14 - Evaluation: measuring a model honestly."""

import streamlit as st

from app import forms, panels, state
from llmfs.config import TrainConfig
from llmfs.recipes import submit_train

KEY = "l14"
DEFAULTS = {"steps": 200, "lr": 3e-4, "eval_every": 25}

st.title("L14 · Evaluation")
st.markdown("""
The training loss only says how well the model predicts the text it is trained on; a model can drive it down by
memorising. The first honest number is the **held-out loss**: the same measure on text the model never trained on
(and **perplexity**, its exponential: roughly how many next tokens the model is still choosing between).

Loss does not tell you whether a model can *do* anything. **Benchmarks** do: HellaSwag (pick the sensible ending
of a sentence), MMLU (school and university exam questions), TruthfulQA (resisting popular misconceptions). A base
model is scored by the **log-likelihood** it gives each answer choice: the most likely choice counts as its answer,
with the same normalisations the standard harness (lm-eval) uses, so your numbers compare with published ones.

In production, evaluation is what decides whether a fine-tune ships: run the same tasks before and after, on data
that was kept out of training, and look at the examples it gets wrong, not just the average.
""")
st.info("More tools for this lesson are being built: perplexity of any model on any text, multiple-choice "
        "benchmarks (HellaSwag, MMLU, TruthfulQA) and your own tasks, and side-by-side model comparison. For now, "
        "watch the held-out loss (the diamonds) of a training run below.", icon=":material/construction:")
panels.default_notice()

left, right = st.columns([1, 2], gap="large")
with left:
    st.subheader("Train")
    cfg = forms.config_form(TrainConfig, key=KEY, defaults=DEFAULTS)
    if forms.start_button(KEY, cfg):
        forms.submit_job(KEY, lambda: submit_train(state.jobs(), cfg, owner=KEY))
with right:
    panels.latest_run_panel(KEY)
