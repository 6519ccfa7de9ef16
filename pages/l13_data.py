"""L13 - Data pipelines: read, mix, filter and deduplicate text, and see what every step keeps and drops."""

import streamlit as st

from app import forms, panels, settings_view
from app import pipeline_view as pv
from llmfs.data.pipeline import PipelineConfig

KEY = "l13"
START = "Run the pipeline"

st.title("L13 · Data pipelines")
st.markdown("""
A language model becomes what it reads. Raw text from the web or a company's files is full of menus, cookie
notices, near-empty pages, spam and the **same document many times over**. A **data pipeline** turns it into
training data in small steps you can check: **read** the sources and **mix** them, **filter** out what is not
worth learning from, **remove duplicates**, and **write shards** that a training job streams. Every step counts
what it keeps and drops, and *why*, so you can see whether the pipeline does what you think.

Set up each step below, run it, and watch the funnel fill.
""")
panels.default_notice()


with panels.stage("1 · Sources and mixing", """
Training sets combine sources: web pages, books, code, papers, your own documents. A **mixing weight** says how
large a share of the documents each source supplies. It is a choice, not the sources' sizes: GPT-3 read its
small, clean Wikipedia about 3.4 times over but only about half of its huge web crawl, because cleaner text is
worth more per word. Weight a source up too far and the model sees the same text so often that it memorises it.

Documents are drawn at random with these weights (seeded, so a rerun draws the same order).
"""):
    sources = pv.sources_picker(KEY)
    mixing = forms.config_form(PipelineConfig, key=f"{KEY}.mix", fields=["mix_until"])

with panels.stage("2 · Quality filters", """
Much of the web is not text you want a model to imitate: navigation menus, lists of links, tables of numbers,
keyword spam, pages that repeat one line. **Filters** are cheap rules that drop such documents. They come from
published recipes (DeepMind's Gopher, Google's C4) and each names the rule a document broke, so after the run you
can read what every rule threw away.

Thresholds are trade-offs: too strict and you lose good text and its variety; too loose and the model learns
boilerplate.
"""):
    filters = pv.filter_picker(KEY)

with panels.stage("3 · Deduplication", """
The web is full of copies: mirrored pages, syndicated articles, templates that differ only by a date. Training
on the same text many times **wastes compute** (steps spent on what the model already saw) and makes the model
**memorise** it and repeat it word for word, private details included. Copies of benchmark questions in the
training data also make test scores meaningless (L14).

**Exact** deduplication hashes each text. **Near-duplicates** need **MinHash**: each document becomes a short
signature of numbers, and documents are compared only when part of their signatures match (**LSH**), so
millions of documents never need comparing pair by pair. The chart shows how likely a pair is to be caught.
"""):
    dedup = pv.dedup_picker(KEY)

with panels.stage("4 · Shards, then packing", """
Kept documents are written to **shards**: tar files of a few thousand documents that a training job (on one
machine or many) streams in turn, without loading everything into memory.

When training reads them, it **packs** the documents: their tokens are laid end to end, separated by an
end-of-text token, and cut into sequences of exactly the context length. Padding each short document to that
length would spend most of every batch on padding; packing spends none.
"""):
    base = forms.config_form(PipelineConfig, key=KEY, fields=[
        "limit", "shard_max_docs", "shard_max_bytes", "errors", "seed", "samples_per_reason"])
    cfg = pv.pipeline_config(base, mixing, sources, filters, dedup)
    settings_view.settings_files(PipelineConfig, KEY, cfg, page="l13", also=(f"{KEY}.mix",),
                                 apply_extra=pv.settings_applier(KEY))
    if forms.start_button(KEY, cfg, label=START):
        forms.submit_job(KEY, lambda: pv.submit_pipeline(cfg, owner=KEY))

st.divider()
st.subheader("What the pipeline did")
pv.latest_pipeline_panel(KEY, start=START)
