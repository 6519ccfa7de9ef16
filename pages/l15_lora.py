"""L15 - LoRA and QLoRA: fine-tuning a big model by training a small one beside it."""

import streamlit as st

from app import adapter_view, forms, lora_view, panels, run_panels, settings_view, state, teach_view
from llmfs.config import TrainConfig
from llmfs.recipes import submit_train

KEY = "l15"
DEFAULTS = {"steps": 200, "lr": 1e-3, "eval_every": 25}

st.title("L15 · LoRA & QLoRA")
st.markdown("""
Fine-tuning every weight of a large model needs memory for the weights, their gradients and two optimizer values
per weight: about four copies of the model. **LoRA** (low-rank adaptation) freezes the original weights and learns
a small correction beside chosen layers, and **QLoRA** also stores the frozen weights in 4 bits. The result is an
**adapter** of a few megabytes that can be swapped per task, shared as a file, or merged back into the weights.
""")
panels.default_notice()
st.info("**Never written code?** Open the tab **Teach it a task**: pick examples of questions and answers (or use "
        "the built-in ones), train an adapter on them, then chat with the model with and without it.",
        icon=":material/school:")
# Only the open tab runs (the other costs nothing); the lesson comes first: it is the course's page.
lesson, teach = st.tabs(["How LoRA works: the lesson", "Teach it a task: no code needed"], key=f"{KEY}.tab",
                        on_change="rerun")
if teach.open:
    with teach:
        teach_view.teach()
if lesson.open:
    with lesson:
        with panels.stage("1 · Choose the base and the adapters", """
        Beside each chosen layer W (in → out numbers), LoRA adds two thin matrices: **A** (r × in) and **B** (out × r),
        with the **rank** r small, often 8 or 16. The layer computes W·x + (alpha / r)·B·A·x; W never changes, only A
        and B learn. B starts at zero, so training starts from exactly the original model.

        **Alpha** sets how strongly the adapters act: alpha / r multiplies their update (rsLoRA uses alpha / √r so high
        ranks still learn). **Which layers**: attention's query / key / value (*qkv*) is the classic choice; adapting
        the MLP layers too usually learns more, for more parameters.

        **QLoRA** keeps the frozen W in 4-bit NF4 (a quarter of 16-bit), while A and B train in full precision. Memory
        for training = weights + gradients + optimizer states + activations: the chart shows which parts each method
        shrinks.
        """):
            picked = forms.config_form(TrainConfig, key=KEY, fields=["model"])
            lora = lora_view.lora_controls(KEY, picked.model if picked else None)
            estimate = st.container()
            with st.expander("Try it on a big model", icon=":material/rocket_launch:"):
                lora_view.big_model(KEY, lora)

        with panels.stage("2 · Train the adapter", """
        Train the adapters with the settings of step 1, on the built-in corpus or questions, your own text or
        examples, or an L13 pipeline's output. LoRA tolerates a higher learning rate than a full fine-tune (1e-3 is a
        common start): only the small matrices move.

        When the run finishes, its adapter (PEFT's format: adapter_config.json + adapter_model.safetensors) appears in
        the library below, and the **measured** memory is set beside the **estimate**, with text generated before and
        after.
        """):
            cfg = forms.config_form(TrainConfig, key=KEY, fields=lora_view.TRAIN_FIELDS,
                                    defaults={**DEFAULTS, **lora_view.form_defaults(lora),
                                              **({"model": picked.model} if picked else {})})
            cfg = cfg if picked else None
            lora_refused = lora_view.lora_problems(lora)
            if lora_refused and cfg is not None:
                st.caption("Start stays off until the LoRA settings of step 1 are fixed (the message is under the "
                           "field).")
            settings_view.settings_files(TrainConfig, KEY, None if lora_refused else cfg, page="l15",
                                         apply_extra=lora_view.settings_applier(KEY))
            name = run_panels.run_name_input(KEY)
            if forms.start_button(KEY, None if lora_refused else cfg):
                forms.submit_job(KEY, lambda: run_panels.named(submit_train(state.jobs(), cfg, owner=KEY), name, KEY))

        panels.latest_run_panel(KEY)
        lora_view.run_results(state.latest(KEY))
        with estimate:
            lora_view.estimate_panel(picked.model if picked else None, lora, cfg)

        st.divider()
        with panels.stage("3 · Adapter library", """
        Every adapter on this machine: those your runs saved and those you uploaded. An adapter only works on the model
        it was trained on (its **base**). Rename it, download it as a .zip to share, or add one someone else trained,
        as long as it is a PEFT LoRA adapter for a model you have.
        """):
            adapter_view.upload(KEY)
        adapter_view.library_section(KEY)

        st.divider()
        with panels.stage("4 · Swap and compare", """
        One base model stays loaded; adapters are switched on and off beside it in an instant, so one server can serve
        many tasks (one adapter each) from one copy of the big model. Here the same prompt and seed go through the base
        alone, each adapter, and a **weighted mix** of two adapters.
        """):
            adapter_view.compare_section(KEY)

        st.divider()
        with panels.stage("5 · Merge and export", """
        For deployment without LoRA code, **merge**: W + (alpha / r)·B·A is computed once and stored as ordinary
        weights. The merged model runs exactly as fast as the base (no extra matrices), but it is a full-size copy and
        the adapter can no longer be switched off.
        """):
            adapter_view.merge_section(KEY)
