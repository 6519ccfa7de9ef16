"""L14 - Evaluation frameworks: how do I know if my model is good?"""

import streamlit as st

from app import eval_view as ev
from app import forms, panels, settings_view
from llmfs.config import EvalConfig

KEY = "l14"
START = "Run the evaluations"

st.title("L14 · Evaluation")
st.markdown("""
A falling training loss says the model fits the text it trains on, not that it is **good**. To know, test it on
questions it has never seen, scored the same way for every model, so that numbers can be compared: yours before
and after fine-tuning, and yours against published ones. Pick models and benchmarks, run them, and read the
scores, the noise around them, and the questions the model got wrong.
""")
panels.default_notice()


with panels.stage("1 · What to test", """
**Perplexity** measures how surprised a model is by text it has not seen: roughly how many next tokens it is still
choosing between (lower is better). It needs no questions, only text, but is comparable only between models with
the same tokenizer, unless counted per word or per byte (**bits per byte**).

**Multiple choice** asks which answer the model finds most likely. Each choice is appended to the question and
the model's **log-likelihood** of it is summed over its tokens: the likeliest choice is the model's answer. Longer
choices have more tokens and so lower totals, so **acc** (raw totals) favours short answers; **acc_norm** divides
by each choice's length in characters first, which is fairer when the choices differ in length (HellaSwag).

**What each benchmark measures**: *llmfs-cloze*, which words come next in Python's documentation (built in);
*HellaSwag*, common sense about everyday scenes; *MMLU*, knowledge in 57 school and university subjects;
*TruthfulQA*, whether the model repeats popular misconceptions. With four choices, guessing scores 25%.
"""):
    models = ev.models_picker(KEY)
    adapters = ev.adapters_picker(KEY)
    tasks = ev.tasks_picker(KEY)

with panels.stage("2 · How many questions", """
A score on 50 questions is a **noisy estimate**: with a true accuracy of 30%, another 50 questions could easily
give 24% or 36%. The **standard error** (± after each score, the error bars in the charts) says how far: two
models whose bars overlap are not told apart, so test more questions before believing a 2-point win.

Scores are computed **the lm-evaluation-harness way** (the same prompts, choice delimiters, length normalisation
and standard errors), so on the full benchmark your numbers compare with published ones: GPT-2 small gets about
31% acc_norm on HellaSwag. A quick run with a limit is for comparing your own models.
"""):
    fields = ["limit", "seed"] + (["num_fewshot"] if "mmlu" in tasks else []) + \
        ["batch_size", "max_length", "stride", "device"]
    base = forms.config_form(EvalConfig, key=KEY, defaults={"limit": 100, "task": "mmlu"}, fields=fields)
    cfgs = ev.plan(base, models, tasks, adapters)
    settings_view.settings_files(EvalConfig, KEY, cfgs[0] if cfgs else None, page="l14", note=(
        f"This page plans {len(cfgs)} evaluations; a settings file holds one: the first ({cfgs[0].model} on "
        f"{cfgs[0].task}). Loading a file sets the settings above, not the models and benchmarks picked."
        if cfgs and len(cfgs) > 1 else ""))
    if cfgs:
        each = "every model, alone and with each adapter," if adapters else "every model"
        st.caption(f"{len(cfgs)} evaluation{'s' if len(cfgs) > 1 else ''}: {each} on every benchmark, one after the "
                   "other on the shared worker.")
    if forms.start_button(KEY, cfgs or None, label=START):
        ev.submit_all(KEY, cfgs)

st.subheader("Running")
ev.latest_panels(KEY, start=START)

st.divider()
st.subheader("3 · Results")
st.markdown("Every finished evaluation on this machine, newest first. The charts compare each model's newest score "
            "per benchmark; the error bars are ± one standard error.")
ev.results_section(KEY)

st.divider()
st.subheader("4 · What the model got wrong")
st.markdown("An average hides *which* questions fail. Read them: a wrong answer with a close second choice is a "
            "near miss; one where the right answer is the least likely shows what the model does not know. Often "
            "the longest or shortest choice wins, which is what length normalisation is for.")
ev.wrong_items_section(KEY)
