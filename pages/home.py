"""Home: what the course is, the built-in model and corpus, this machine, and a one-click first run."""

import math

import streamlit as st

from app import charts, forms, panels, state
from app.text import md_escape
from llmfs.config import TrainConfig
from llmfs.packaged import SMOLLM2
from llmfs.recipes import submit_train

QUICK_START = TrainConfig(init="random", steps=100, lr=3e-3, warmup_steps=10, eval_every=20, save_model=False)

st.title("llmfs-lab")
st.markdown("""
**LLM From Scratch: Production Techniques** is the second half of a course that builds a GPT from scratch. Here
you take that model into production habits: start from **pretrained weights** instead of random ones (L12), feed
it **clean data** (L13), **measure** it honestly (L14), fine-tune it **cheaply with LoRA** (L15) and train it
**faster and smaller with mixed precision** (L16).

Every lesson page explains the idea in plain words and lets you run it. Runs train in the background: you can
switch pages, close the tab or open a second one, and find every run again on the **Runs** page.
""")

left, right = st.columns(2, gap="large")
with left:
    st.subheader(":material/deployed_code: The built-in model and text")
    assets = state.default_assets()
    if assets.ready():
        info = assets.info()
        corpus, pre = info.get("corpus", {}), info.get("pretrain", {})
        st.markdown(
            f"**llmfs-tiny** is a small GPT-2 ({pre.get('params', 0) / 1e6:.2f} million parameters) that this app "
            f"pretrained on this machine, so every lesson works offline. It read **llmfs-corpus**: "
            f"{corpus.get('train_documents', '?')} documents of Python's own documentation "
            f"({corpus.get('train_tokens', 0):,} tokens, {corpus.get('train_bytes', 0) / 1e6:.1f} MB of text), "
            f"for {pre.get('steps', '?')} steps ({panels.fmt_duration(pre.get('seconds', 0))}).")
        a, b = st.columns(2)
        windows = pre.get("heldout_windows") or {"batches": 16, "batch_size": 16, "seq_len": 128}
        a.metric("Held-out loss, pretrained", f"{pre.get('heldout_loss', math.nan):.2f}",
                 help=f"Loss on llmfs-corpus's held-out documents, which the model never saw in training: "
                      f"{windows['batches'] * windows['batch_size']:,} windows of {windows['seq_len']} tokens. Lower "
                      "is better. Fine-tunes on llmfs-corpus report their held-out loss on the same windows, so "
                      "their figures and this one compare.")
        b.metric("Same model, random weights", f"{pre.get('random_init_heldout_loss', math.nan):.2f}",
                 help="What the same architecture scores before any training: the gap is what pretraining bought.")
        st.caption(f"Both on llmfs-corpus's held-out documents ({windows['batches'] * windows['batch_size']:,} "
                   f"windows of {windows['seq_len']} tokens), the text fine-tunes on llmfs-corpus are measured on too. "
                   f"Perplexity {pre.get('heldout_perplexity', math.nan):,.0f}: on unseen text the model is about "
                   f"as unsure as choosing among that many equally likely next tokens (random weights: "
                   f"{math.exp(pre.get('random_init_heldout_loss', 0)):,.0f}).")
    else:
        st.info("llmfs-tiny is not built yet on this machine. The first training run builds it (the corpus, a "
                "tokenizer and a short pretraining): **about 5 minutes extra**, once.", icon=":material/construction:")
    st.markdown("**smollm2-135m** is built in too: a real pretrained chat model, 100 times larger than llmfs-tiny, "
                "that answers simple questions and beats llmfs-tiny clearly on HellaSwag and on perplexity (MMLU stays "
                "at chance at this size). Pick it in any lesson's model picker.")
    st.caption(md_escape(SMOLLM2.about) + " It arrives with `make install` as a Python package and is unpacked "
               "once (under a minute).")
with right:
    st.subheader(":material/memory: This machine")
    m = state.machine()
    gpus = m.get("gpus") or []
    if gpus:
        names = ", ".join(f"{g.get('name', 'GPU')} ({charts.fmt_bytes(g.get('memory_total_bytes'))})" for g in gpus)
        st.markdown(f"**{len(gpus)} NVIDIA GPU{'s' if len(gpus) > 1 else ''}**: {names}. Training runs there.")
    elif m.get("cuda_available"):
        st.markdown("**A CUDA GPU** is available (its memory could not be read). Training runs there.")
    else:
        st.markdown("**No GPU**: training runs on the CPU. llmfs-tiny trains in seconds to minutes here; a step of "
                    "smollm2-135m takes seconds, so its pages offer quick settings and say the expected time. Every "
                    "lesson runs, including fp16 / bf16 and 4-bit QLoRA, but what a GPU speeds up does not speed up "
                    "here: fp16 is usually slower than fp32 on a CPU, and 4-bit weights save memory, not time.")
    st.markdown(f"{m.get('cpu_count', '?')} CPU cores, {charts.fmt_bytes(m.get('system_total_bytes'))} of memory; "
                f"Python {m.get('python')}, PyTorch {m.get('torch')}.")

st.divider()
st.subheader(":material/rocket_launch: Quick start: watch a model learn")
pretrained = state.default_assets().info().get("pretrain", {}) if state.default_ready() else {}
head_start = (f"the pretrained llmfs-tiny is at {pretrained['heldout_loss']:.1f} after {pretrained['steps']:,} steps"
              if pretrained.get("heldout_loss") and pretrained.get("steps") else
              "the pretrained llmfs-tiny gets much further with its longer training")
st.markdown(f"Train a fresh copy of llmfs-tiny, **from random weights**, for {QUICK_START.steps} steps on "
            f"llmfs-corpus. Watch the loss fall from about 8 (pure guessing among 4,096 tokens); {head_start}. "
            "L12 shows why that head start matters.")
if st.button("Start the quick start run", type="primary", icon=":material/play_arrow:", disabled=state.busy("home")):
    forms.submit_job("home", lambda: submit_train(state.jobs(), QUICK_START, owner="home"))
panels.latest_run_panel("home", start="Start the quick start run")
