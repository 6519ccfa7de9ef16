"""L12 - Pretrained weights: start from what a model already knows instead of from random numbers."""

import streamlit as st

from app import forms, l12_view, panels, run_panels, settings_view, state
from llmfs.config import LORA_FIELDS, TrainConfig
from llmfs.recipes import submit_train

KEY = "l12"
DEFAULTS = {"steps": 200, "lr": 3e-4, "eval_every": 25}

st.title("L12 · Pretrained weights & transfer learning")
st.markdown("""
A model's **weights** are everything it has learned. Pretraining them from random numbers takes enormous amounts of
text and compute (GPT-2 small read about 40 GB of web pages), so in production you **download weights someone else
pretrained** and fine-tune them: the model already knows spelling, grammar and a lot about the world, and your data
only has to teach it your task. Two pretrained models are built in and work offline: **llmfs-tiny**, a 1.35M GPT-2
this app pretrained on Python's documentation, and **smollm2-135m**, a real 135M chat model. Our from-scratch GPT
uses Hugging Face GPT-2's parameter names, and our from-scratch Llama (SmolLM, Llama, Qwen2) Llama's, so loading a
checkpoint is a table of names, plus, for GPT-2, a transpose of four matrices it stores the other way round.
""")
panels.default_notice()

model_tab, vocab_tab, freeze_tab, train_tab, compare_tab = st.tabs(
    ["1 · Load a model", "2 · Vocabulary", "3 · What trains", "4 · Fine-tune", "5 · Pretrained vs random"])

with model_tab:
    st.markdown("Load a model and look inside: how many parameters it has and where they sit. The **parity check** "
                "runs the same text through our from-scratch model and through the `transformers` library: if the "
                "conversion is right, the two agree to within float rounding.")
    picked = l12_view.model_picker(KEY)
    if picked:
        model, tokenizer, folder, source = picked
        l12_view.about(source, folder, model)
        l12_view.architecture(model)
        st.subheader("Parity with transformers")
        l12_view.parity(folder, model, tokenizer, KEY)
        st.subheader("From the checkpoint's names to ours")
        l12_view.name_map(model)
        st.subheader("Ask it something")
        l12_view.ask(model, tokenizer, KEY)

with vocab_tab:
    if picked:
        l12_view.vocabulary(model, tokenizer, source, KEY)
    else:
        st.info("Load a model in step 1 first.", icon=":material/arrow_back:")

with freeze_tab:
    st.markdown("You don't have to train everything. **Freezing** layers keeps what they know, saves memory "
                "(no gradients or optimizer state for them) and guards against forgetting when your data is small. "
                "Pick a strategy and see which tensors would train, before any run.")
    freeze = l12_view.layer_map(model, KEY) if picked else {}
    if not picked:
        st.info("Load a model in step 1 first.", icon=":material/arrow_back:")

with train_tab:
    st.markdown("Fine-tune with the strategy from step 3 on the built-in corpus, your own text file, or a hub "
                "dataset (`hf:NAME`). Text generated from the same prompts before and after training appears "
                "under the charts.")
    defaults = {**DEFAULTS, **freeze, **({"model": source} if picked else {})}
    left, right = st.columns([1, 2], gap="large")
    with left:
        if freeze:  # chosen in step 3 (else the form below has the choice)
            l12_view.freeze_note(freeze)
        cfg = forms.config_form(TrainConfig, key=KEY, defaults=defaults,
                                fields=[f for f in TrainConfig.__dataclass_fields__
                                        if f not in freeze and f not in LORA_FIELDS])
        settings_view.settings_files(TrainConfig, KEY, cfg, page="l12", also=(f"{KEY}.freeze",))
        name = run_panels.run_name_input(KEY)
        if forms.start_button(KEY, cfg):
            forms.submit_job(KEY, lambda: run_panels.named(submit_train(state.jobs(), cfg, owner=KEY), name, KEY))
    with right:
        panels.latest_run_panel(KEY)
        l12_view.samples(state.latest(KEY))

with compare_tab:
    st.markdown("The point of pretraining, first before any training: the loaded model, and the same architecture "
                "with random weights, asked the same thing.")
    if picked:
        l12_view.before_training(model, tokenizer, source, KEY)
    else:
        st.info("Load a model in step 1 first.", icon=":material/arrow_back:")
    st.markdown("Then the **same** fine-tune (same data, steps and seed) started once from the pretrained weights "
                "and once from random ones. Watch the two loss curves.")
    if cfg is not None:
        l12_view.freeze_note({"freeze": cfg.freeze, "freeze_layers": cfg.freeze_layers},
                             "step 3 · What trains" if freeze else "step 4 · Fine-tune")
        l12_view.random_freeze_warning({"freeze": cfg.freeze})
        l12_view.pair_time(cfg)
    both_name = run_panels.run_name_input(f"{KEY}.both", label="Name for the pair (optional)")
    if st.button("Run both", type="primary", icon=":material/play_arrow:", key=f"{KEY}.both",
                 disabled=cfg is None or state.busy(KEY)):
        l12_view.submit_comparison(KEY, cfg, both_name)
    pair = st.session_state.get(f"{KEY}.compare")
    if pair:
        panels.compare_runs(pair)
    else:
        st.caption("Uses the settings of step 4. Both runs queue one after the other on the shared worker.")
