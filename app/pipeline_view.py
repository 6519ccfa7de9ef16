"""The L13 page's parts: the source picker (with uploads), filter and deduplication settings, the live pipeline
panel, and what a finished run leaves to look at (dropped samples, near-duplicate pairs, unreadable records,
shards).

The live panel reuses the run panel's header (status badge, Stop / Resume, the error of a failed run) and log
from `app.panels`; only the body differs, since a pipeline counts documents rather than training steps. Like
every panel it reads only the run folder.
"""

from __future__ import annotations

import dataclasses
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from llmfs.config import DEFAULT_DATA, ConfigError, field_info
from llmfs.data.dedup import MinHashConfig
from llmfs.data.filters import FILTERS
from llmfs.data.pipeline import SAMPLE_CHARS, PipelineConfig
from llmfs.data.text import HF_PREFIX
from llmfs.runs import FINAL_STATES, INTERRUPTED, PENDING, RUNNING, SUCCEEDED, Run

from . import charts, forms, identity, panels, reproduce_view, state
from .choices import pipeline_outputs, shards_folder, source_label  # noqa: F401 (the page's API)
from .uploads import UPLOAD_SUFFIXES, fmt_mb, safe_upload_name, save_upload, saved_upload, upload_limit_mb  # noqa: F401

PLOT_CONFIG = {"displaylogo": False}

# -- sources ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    spec: str       # what the pipeline reads (llmfs-corpus, a path, a pattern, hf:NAME)
    weight: float


def sources_picker(key: str) -> list[Source]:
    """The bundled corpus, uploads, a hub dataset and a path on this machine, each with a mixing weight."""
    sources: list[Source] = []
    builtin, weight = _source_row(key, "builtin", lambda: st.checkbox(
        "**llmfs-corpus**: Python's documentation (built in)", value=True, key=f"{key}.builtin",
        persist_state="session"))
    if builtin:
        sources.append(Source(DEFAULT_DATA, weight))
    limit = upload_limit_mb()
    fresh = f"{key}.uploads" not in st.session_state    # the page was just opened (again): the uploader is empty
    uploads = st.file_uploader(
        f"Upload files: .txt (one document per file), .jsonl (one `{{\"text\": ...}}` per line) or .parquet (a "
        f"`text` column); up to {fmt_mb(limit)} each", type=[s[1:] for s in UPLOAD_SUFFIXES],
        accept_multiple_files=True, max_upload_size=max(1, math.ceil(limit)), key=f"{key}.uploads")
    for path in _remembered_uploads(key, _saved_uploads(key, uploads or []), fresh, bool(uploads)):
        _, weight = _source_row(key, f"upload.{path.name}", lambda p=path: _upload_row(p))
        sources.append(Source(str(path), weight))
    hub, hub_weight = _source_row(key, "hub", lambda: st.text_input(
        "Hugging Face dataset", placeholder="hf:wikitext:wikitext-2-raw-v1", key=f"{key}.hub", persist_state="session",
        help="hf:NAME[:CONFIG][@SPLIT], streamed from the hub. Needs a network: offline, the run stops at once and "
             "says why."))
    if hub.strip():
        hub = hub.strip()
        sources.append(Source(hub if hub.startswith(HF_PREFIX) else HF_PREFIX + hub, hub_weight))
    path, path_weight = _source_row(key, "path", lambda: st.text_input(
        "Files on this machine", placeholder="/data/web.jsonl, /data/texts/ or /data/shards/shard-{000..009}.tar",
        key=f"{key}.path",
        persist_state="session", help="A file, a folder (read recursively), a glob such as /data/*.jsonl, or a shard "
                                "pattern such as shards/shard-{000..009}.tar (a pipeline run's output works)."))
    if path.strip():
        sources.append(Source(path.strip(), path_weight))
    _shares_caption(sources)
    return sources


def _upload_row(path: Path) -> None:
    """An uploaded source: its (safe) file name, and what it holds as the pipeline reads it."""
    from llmfs.data.text import summarize
    st.markdown(f":material/upload_file: `{path.name}`")
    try:
        summary = summarize(str(path))
    except (ValueError, OSError):  # it was checked when saved; a file changed since is the run's to report
        return
    if summary is not None:
        docs = f"{summary.documents:,} document{'s' if summary.documents != 1 else ''}"
        st.caption(f"{docs}, {summary.characters:,} characters")


def _source_row(key: str, name: str, draw) -> tuple:
    """One source: its widget on the left, its weight on the right. Returns (what the widget returned, weight)."""
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    with left:
        value = draw()
    weight = right.number_input("Weight", value=1.0, step=0.1, format="%g", key=f"{key}.w.{name}",
                                persist_state="session",
                       help="Mixing weight: the share of documents drawn from this source is its weight divided by "
                            "the sum of the weights of the sources in use.")
    return value, weight


def _remembered_uploads(key: str, paths: list[Path], fresh: bool, has_files: bool) -> list[Path]:
    """The uploads to use: those in the uploader, else (a file uploader cannot keep its files when the person leaves
    the page) the ones saved from it earlier in this browser session, said in a caption, until others are uploaded
    or the person lets them go."""
    last_key, use_key = f"{key}.last_uploads", f"{key}.use_last_uploads"
    if has_files:
        st.session_state[last_key], st.session_state[use_key] = [str(p) for p in paths], False
        return paths
    last = [p for p in st.session_state.get(last_key) or [] if Path(p).is_file()]
    if fresh and last:
        st.session_state[use_key] = True
    if last and st.session_state.get(use_key):
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.caption(f"Using the {len(last)} file{'s' if len(last) != 1 else ''} you uploaded earlier in this "
                     "session (below). Upload files to replace them.")
        if right.button("Forget them", key=f"{key}.forget_uploads", icon=":material/close:"):
            st.session_state[last_key], st.session_state[use_key] = [], False
            st.rerun()
        return [Path(p) for p in last]
    st.session_state[last_key] = []     # taken out of the uploader: forgotten
    return []


def _saved_uploads(key: str, uploads: list) -> list[Path]:
    """Save each upload once (not on every rerun of the page) and return the saved paths; refusals are shown under
    the uploads (a JSON Lines file with some unreadable lines is offered without them, `app.uploads.saved_upload`)."""
    paths = []
    for upload in uploads:
        path = saved_upload(upload, key)
        if path is not None:
            paths.append(path)
    return paths


def _shares_caption(sources: list[Source]) -> None:
    if not sources:  # not an error: nothing was done wrong, the run just needs something to read
        st.caption("Choose at least one source: Start waits for it.")
        return
    total = sum(max(s.weight or 0, 0) for s in sources)
    if len(sources) > 1 and total > 0:
        st.caption("Each document is drawn from: " + " · ".join(
            f"**{source_label(s.spec)}** {max(s.weight or 0, 0) / total:.0%}" for s in sources))


# -- filters ------------------------------------------------------------------------------------------------------
# The filters a form can set up (regex and range take rule lists, which only Python code can give today).
FILTER_INFO = {  # name -> (label, what it does in a few words, in more words)
    "gopher_quality": ("Gopher quality", "drops pages that are not prose",
                       "Too few words, odd word lengths, mostly symbols, bullet lists, cut-off lines, no everyday "
                       "words (DeepMind's Gopher rules, 2021)."),
    "gopher_repetition": ("Gopher repetition", "drops pages that repeat themselves",
                          "The same lines, paragraphs or phrases over and over: spam, templates, keyword stuffing "
                          "(Gopher, 2021)."),
    "c4": ("C4 cleaning", "removes boilerplate lines, drops code and stubs",
           "Removes lines without an end mark and javascript or cookie notices; drops pages with placeholder text, "
           "code braces, or fewer than 5 sentences left (Google's C4, 2019)."),
    "length": ("Length", "drops documents too short or too long", "Plain bounds on characters and words."),
    "language": ("Language", "keeps the languages you choose",
                 "Judged by the share of each language's most common words (no download needed)."),
}
DEFAULT_FILTERS = ("gopher_quality", "gopher_repetition", "c4")


def filter_picker(key: str) -> tuple[tuple[str, ...], dict] | None:
    """(filter names in order, {name: {field: value}} for the thresholds changed from the defaults); None while a
    threshold is refused (the form says why)."""
    names = st.multiselect("Filters, in the order they run", list(FILTER_INFO), default=list(DEFAULT_FILTERS),
                           format_func=lambda n: FILTER_INFO[n][0], key=f"{key}.filters", persist_state="session",
                           help="\n".join(f"- **{label}**: {short}" for label, short, _ in FILTER_INFO.values()))
    thresholds, ok = {}, True
    for name in names:
        label, short, what = FILTER_INFO[name]
        with st.expander(f"**{label}**: {short}"):
            st.caption(what + " Each box is one rule's threshold; empty a box to switch that rule off.")
            cfg = threshold_form(FILTERS[name], key=f"{key}.{name}")
        if cfg is None:
            ok = False
        elif changed := changed_fields(cfg):
            thresholds[name] = changed
    others = [f"{FILTER_INFO[n][0]} ({FILTER_INFO[n][1]})" for n in FILTER_INFO if n not in names]
    if others:
        st.caption("Also available: " + ", ".join(others) + ".")
    return (tuple(names), thresholds) if ok else None


def threshold_form(cls: type, key: str):
    """`forms.config_form` for a filter class: its thresholds with their help, checked by the class itself."""
    return forms.config_form(cls, key=key)


def changed_fields(cfg) -> dict:
    """The fields of a config dataclass that differ from their defaults."""
    defaults = {name: meta["default"] for name, meta in field_info(cfg).items()}
    return {k: v for k, v in dataclasses.asdict(cfg).items() if v != defaults.get(k)}


# -- deduplication ------------------------------------------------------------------------------------------------
DEDUP_LABELS = {"none": "None: keep every copy",
                "exact": "Exact copies (ignoring case and punctuation)",
                "minhash": "Near-duplicates too (MinHash + LSH, as FineWeb)"}


def dedup_picker(key: str) -> dict | None:
    """The PipelineConfig fields of deduplication, with the LSH S-curve for the chosen bands and rows; None while
    a value is refused."""
    mode = st.radio("Remove duplicates", list(DEDUP_LABELS), index=2, format_func=DEDUP_LABELS.get,
                    key=f"{key}.dedup", persist_state="session", help=field_info(PipelineConfig)["dedup"]["help"])
    if mode != "minhash":
        return {"dedup": mode}
    mh = forms.config_form(MinHashConfig, key=f"{key}.minhash", fields=["n_gram", "bands", "rows"])
    if mh is None:
        return None
    with st.container(border=True):
        st.plotly_chart(charts.s_curve_figure(mh.bands, mh.rows), key=f"{key}.scurve", config=PLOT_CONFIG)
        t = charts.lsh_threshold(mh.bands, mh.rows)
        st.caption(f"Each document gets {mh.bands} x {mh.rows} = {mh.bands * mh.rows} MinHash numbers, split into "
                   f"{mh.bands} bands of {mh.rows}. Two documents are compared only when one whole band matches, "
                   f"which happens with probability $1-(1-s^{{{mh.rows}}})^{{{mh.bands}}}$ for documents sharing a "
                   f"fraction s of their {mh.n_gram}-word phrases (their Jaccard similarity). Pairs above about "
                   f"**{t:.2f}** are almost always caught, pairs well below almost never: more bands move the step "
                   "left (catch looser copies), more rows make it steeper and move it right.")
    return {"dedup": "minhash", "shingle_size": mh.n_gram, "bands": mh.bands, "rows": mh.rows}


# -- a settings file put into the pickers -------------------------------------------------------------------------
def settings_applier(key: str):
    """For `settings_view.settings_files`: a function putting a loaded file's sources, filters, thresholds and
    deduplication into this page's own pickers; it returns the fields it set. Sources the pickers cannot hold (a
    second hub dataset or path) leave `inputs` unset, so the page says the file's sources were not used."""
    def apply(values: dict) -> list[str]:
        done = []
        if "inputs" in values:
            inputs = list(values["inputs"])
            hubs = [s for s in inputs if s.startswith(HF_PREFIX)]
            paths = [s for s in inputs if s != DEFAULT_DATA and not s.startswith(HF_PREFIX)]
            if len(hubs) <= 1 and len(paths) <= 1:
                st.session_state[f"{key}.builtin"] = DEFAULT_DATA in inputs
                st.session_state[f"{key}.hub"] = hubs[0] if hubs else ""
                st.session_state[f"{key}.path"] = paths[0] if paths else ""
                done.append("inputs")
                weights = values.get("weights")
                if weights is not None and len(weights) == len(inputs):
                    for spec, weight in zip(inputs, weights):
                        row = "builtin" if spec == DEFAULT_DATA else "hub" if spec.startswith(HF_PREFIX) else "path"
                        st.session_state[f"{key}.w.{row}"] = float(weight)
                    done.append("weights")
        if "filters" in values:
            st.session_state[f"{key}.filters"] = [n for n in values["filters"] if n in FILTER_INFO]
            done.append("filters")
        for name, changed in (values.get("thresholds") or {}).items():
            if name in FILTERS and isinstance(changed, dict):
                known = field_info(FILTERS[name])
                for field, value in changed.items():
                    if field in known:
                        st.session_state[f"{key}.{name}.{field}"] = value
        if "thresholds" in values:
            done.append("thresholds")
        if "dedup" in values:
            st.session_state[f"{key}.dedup"] = values["dedup"]
            done.append("dedup")
        for field, widget in (("shingle_size", "n_gram"), ("bands", "bands"), ("rows", "rows")):
            if field in values:
                st.session_state[f"{key}.minhash.{widget}"] = values[field]
                done.append(field)
        return done
    return apply


# -- the config and the job ---------------------------------------------------------------------------------------
def pipeline_config(base: PipelineConfig | None, mixing: PipelineConfig | None, sources: list[Source], filters,
                    dedup: dict | None) -> PipelineConfig | None:
    """The PipelineConfig the page's widgets describe (`base`: the run settings, `mixing`: when to stop mixing,
    `filters` and `dedup` from their pickers), or None, with the reason shown, when something is refused."""
    if base is None or mixing is None or filters is None or dedup is None or not sources:
        return None
    names, thresholds = filters
    weights = tuple(s.weight if s.weight is not None else 0.0 for s in sources) if len(sources) > 1 else None
    try:
        return dataclasses.replace(base, inputs=tuple(s.spec for s in sources), weights=weights,
                                   mix_until=mixing.mix_until, filters=names, thresholds=thresholds or None, **dedup)
    except ConfigError as e:
        meta = field_info(PipelineConfig).get(e.field, {})
        forms.show_config_error(e, meta)
        return None


def submit_pipeline(cfg: PipelineConfig, owner: str) -> str:
    """Check that local sources exist (cheap; the bundled corpus and hub datasets are checked by the run) and
    queue the pipeline. Raises DataError (a ValueError) naming a missing source."""
    from llmfs.data.readers import resolve_inputs

    state.jobs().admit("pipeline", cfg)  # the workshop's rules first: a refused path is never opened
    for spec in cfg.inputs:
        if spec != DEFAULT_DATA and not spec.startswith(HF_PREFIX):
            resolve_inputs(spec)
    return state.jobs().submit("pipeline", cfg, owner=owner)


# -- the live panel -----------------------------------------------------------------------------------------------
HELP = {"read": "Documents read from the sources so far.",
        "kept": "Documents that passed every filter and deduplication, written to the shards.",
        "docs": "Documents read per second, over the whole run so far.",
        "mb": "Megabytes of text read per second, over the whole run so far.",
        "errors": "Records that could not be read (broken JSON, not UTF-8, no text field): skipped and counted."}


def latest_pipeline_panel(key: str, start: str) -> None:
    run_id = state.latest(key)
    if run_id is None:
        st.info(f"No run yet. Press **{start}**: the funnel of what each step keeps, the reasons for every drop and "
                "the reading speed appear here, live.", icon=":material/filter_alt:")
        return
    pipeline_panel(run_id)
    reproduce_view.reproduce_section(state.jobs().get(run_id))


def pipeline_panel(run_id: str, *, poll_s: float = panels.POLL_S) -> None:
    """Status, counts, funnel, drop reasons, throughput, memory and mix of one pipeline run, live while it runs;
    after it, the dropped samples, near-duplicates, unreadable records and shards."""
    panels.live_fragment(run_id, _panel_body, poll_s=poll_s)


def _panel_body(run, was_live: bool) -> None:
    run_id = run.run_id
    status = run.status()
    run_state = status.get("state", INTERRUPTED)
    if was_live and run_state in FINAL_STATES:
        st.rerun(scope="app")  # draw once more as a still panel: polling stops
    records = panels.records_of(run_id)
    pipe = charts.of_kind(records, "pipeline")
    result = status.get("result") or {}
    last = result or (pipe[-1] if pipe else {})
    panels._header(run, status, run_state, pipe)
    if not last:
        if run_state in (PENDING, RUNNING):
            st.caption("The counts appear as soon as the first documents are through.")
        panels._log(run)
        return
    _numbers(last, run_state, run.config().get("limit"))
    _charts(run, records, last, run_state)
    if run_state in FINAL_STATES and result and identity.may_see_texts(status.get("user")):
        _results(run, result)
    panels._log(run)  # or, for someone else's run in a workshop, the line saying whose its texts are


def _numbers(last: dict, run_state: str, limit: int | None) -> None:
    read, kept = last.get("documents_in", 0), last.get("documents_out", 0)
    elapsed = last.get("elapsed_s") or 0
    errors = last.get("read_error_count", last.get("read_errors", 0))
    cols = st.columns(5)
    cols[0].metric("Documents read", f"{read:,}", help=HELP["read"],
                   delta=f"{last.get('bytes_in', 0) / 1e6:,.1f} MB", delta_color="off", delta_arrow="off")
    cols[1].metric("Kept", f"{kept:,}", help=HELP["kept"], delta=f"{kept / read:.0%} of read" if read else None,
                   delta_color="off", delta_arrow="off")
    cols[2].metric("Documents / second", f"{last.get('documents_per_s', 0):,.0f}", help=HELP["docs"])
    cols[3].metric("MB / second", f"{last.get('bytes_in', 0) / max(elapsed, 1e-9) / 1e6:,.2f}", help=HELP["mb"])
    cols[4].metric("Unreadable records", f"{errors if isinstance(errors, int) else len(errors):,}",
                   help=HELP["errors"])
    took = f"took {_seconds(elapsed)}" if run_state in FINAL_STATES else f"running for {_seconds(elapsed)}"
    stopped = " · stopped early: the counts are for the documents read until then" if last.get("stopped") else ""
    if run_state == RUNNING and limit:
        st.progress(min(1.0, read / limit), text=f"{read:,} of at most {limit:,} documents · {took}")
    else:
        st.caption(took + stopped)


def _charts(run: Run, records: list[dict], last: dict, run_state: str) -> None:
    run_id = run.run_id
    left, right = st.columns([2, 3])                          # drop reasons need room for their labels
    with left, st.container(border=True):
        st.markdown("**What each step kept**")
        st.plotly_chart(charts.funnel_figure(last.get("funnel") or []), key=f"funnel:{run_id}", config=PLOT_CONFIG)
        if run_state == RUNNING and any(r["step"].endswith("_dedup") for r in last.get("funnel") or []):
            st.caption("Deduplication works on batches of documents, so its bar trails a little while the run goes.")
    with right, st.container(border=True):
        st.markdown("**Why documents were dropped**")
        st.plotly_chart(charts.drops_figure(last.get("drops") or {}), key=f"drops:{run_id}", config=PLOT_CONFIG)
    left, right = st.columns(2)
    ended = run_state in FINAL_STATES
    with left, st.container(border=True):
        st.markdown("**Reading speed**")
        if ended and not charts.pipeline_rates(records)["t"]:
            st.caption(too_quick_note(last, run_state, "the reading speed"))
        else:
            st.plotly_chart(charts.pipeline_throughput_figure(records), key=f"rate:{run_id}", config=PLOT_CONFIG)
    with right, st.container(border=True):
        st.markdown("**Memory**")
        used = charts.memory_series(records)["used"]
        if ended and len(used) < 2:
            st.caption(too_quick_note(last, run_state, "memory over time", used))
        else:
            st.plotly_chart(charts.memory_figure(records), key=f"memory:{run_id}", config=PLOT_CONFIG)
        st.caption("Documents stream through one at a time, so memory stays about flat however much is read; "
                   "only near-duplicate detection grows, by its MinHash numbers per document.")
    if len(charts.mix_shares(last.get("mix"))) > 1:
        with st.container(border=True):
            st.markdown("**Mix: your weights against what was drawn**")
            st.plotly_chart(charts.mix_figure(last["mix"], label=source_label), key=f"mix:{run_id}",
                            config=PLOT_CONFIG)
            st.caption(mix_note(last["mix"], run.config().get("mix_until")))


def _seconds(elapsed: float) -> str:
    """A duration as the panel says it: tenths under ten seconds (a quick run took 0.3 s, not "0 s")."""
    return f"{elapsed:.1f} s" if elapsed < 10 else panels.fmt_duration(elapsed)


def too_quick_note(last: dict, run_state: str, what: str, used: list | None = None) -> str:
    """What a chart's place says for a run that ended before the chart had two points to draw (the readings come
    every half second or so): how long it took, and the averages instead of a curve."""
    elapsed = last.get("elapsed_s") or 0.0
    verb = "Finished" if run_state == SUCCEEDED else "Ended"
    note = f"{verb} in {_seconds(elapsed)}: too quick to chart {what}."
    if used is None and elapsed > 0:
        note += (f" On average {last.get('documents_in', 0) / elapsed:,.0f} documents and "
                 f"{last.get('bytes_in', 0) / elapsed / 1e6:,.2f} MB per second.")
    elif used:
        note += f" One reading: {charts.fmt_bytes(used[-1])}."
    return note


def mix_note(mix: dict, mix_until: str | None) -> str:
    """What the mix chart shows, and why the shares may have left the weights (a source ran out)."""
    note = "Each document's source is drawn at random with your weights, so the shares approach the weights."
    exhausted = [source_label(s) for s in mix.get("exhausted") or []]
    if exhausted and mix_until != "first_exhausted":
        note += (f" **{exhausted[0]}** ran out after {mix.get('count_' + mix['exhausted'][0], 0):,} documents; from "
                 "then on the other sources filled its place, which moved the shares. To keep the shares at your "
                 "weights, set *Mix until* (Advanced settings, under the sources) to `first_exhausted`: the run "
                 "then stops when the first source runs out.")
    elif exhausted:
        note += f" The run stopped when **{exhausted[0]}** ran out (*Mix until*: `first_exhausted`)."
    return note


# -- after the run ------------------------------------------------------------------------------------------------
def _results(run: Run, result: dict) -> None:
    use_for_training(run, result)
    samples, clusters = result.get("samples") or {}, result.get("clusters") or []
    errors, shards = result.get("read_error_count", 0), result.get("shards") or []
    tabs = st.tabs([f"Dropped documents ({sum((result.get('drops') or {}).values()):,})",
                    f"Near-duplicates ({len(clusters):,})", f"Unreadable records ({errors:,})",
                    f"Shards ({len(shards):,})"])
    with tabs[0]:
        dropped_samples(run.run_id, samples, result.get("drops") or {})
    with tabs[1]:
        duplicate_pairs_view(clusters, samples, shards_folder(run, result))
    with tabs[2]:
        unreadable_view(result)
    with tabs[3]:
        shards_view(shards)


def use_for_training(run: Run, result: dict) -> None:
    """Where the kept documents are, and how to train on them."""
    if not result.get("shards_written"):
        st.warning("No document passed every step, so nothing was written: loosen a filter's thresholds (or "
                   "choose fewer filters) and run again.", icon=":material/filter_alt_off:")
        return
    folder = shards_folder(run, result)
    n = result.get("documents_out", 0)
    with st.container(border=True):
        if not identity.shows_paths():  # a participant picks it by its run; the folder's path is the server's
            st.markdown(f":material/school: **Use this data for training.** The {n:,} kept documents are in "
                        f"{result['shards_written']} shard file(s). On **L12** or **L15**, pick *The output of an L13 "
                        f"data pipeline run* under *Training data*, then run `{run.run_id}`.")
            return
        st.markdown(f":material/school: **Use this data for training.** The {n:,} kept documents are in "
                    f"{result['shards_written']} shard file(s) in this folder:")
        st.code(str(folder), language=None)
        st.markdown("On **L12** or **L15**, pick it under *Training data* (it is listed there as a pipeline "
                    "output), or paste this path.")


def dropped_samples(run_id: str, samples: dict, drops: dict) -> None:
    """Pick a drop reason, read the documents it dropped (the first few kept as examples)."""
    if not samples:
        st.caption("Nothing was dropped." if not drops else "No examples were kept (Advanced settings: examples "
                                                             "kept per drop reason).")
        return
    reasons = sorted(samples, key=lambda r: (-drops.get(r, 0), r))
    reason = st.selectbox("Why they were dropped", reasons, key=f"samples:{run_id}", persist_state="session",
                          format_func=lambda r: f"{charts.reason_name(r)} ({drops.get(r, len(samples[r])):,} dropped)")
    st.caption(charts.reason_help(reason) + f" The first {len(samples[reason])} of them (up to {SAMPLE_CHARS:,} "
                                     "characters each):")
    for sample in samples[reason]:
        with st.container(border=True):
            where = f"`{sample['id']}` from {source_label(sample.get('source') or '?')}"
            if sample.get("duplicate_of"):
                j = sample.get("jaccard_estimate")
                where += f" · copy of `{sample['duplicate_of']}`" + (f" (similarity ≈ {j:.2f})" if j else "")
            st.caption(where)
            with st.container(height=180, border=False):
                st.text(sample["text"], width="stretch")


def duplicate_pairs(clusters: list[dict], samples: dict) -> list[dict]:
    """Each (kept, dropped) pair of the clusters: {"kept", "kept_text", "duplicate", "duplicate_text", "jaccard"};
    a text is None unless it was kept as a sample (only dropped documents are)."""
    texts = {s["id"]: s["text"] for bucket in samples.values() for s in bucket}
    return [{"kept": c["kept"], "kept_text": texts.get(c["kept"]), "duplicate": d["id"],
             "duplicate_text": texts.get(d["id"]), "jaccard": d.get("jaccard")}
            for c in clusters for d in c.get("duplicates", [])]


def duplicate_pairs_view(clusters: list[dict], samples: dict, folder: Path, side_by_side: int = 5) -> None:
    if not clusters:
        st.caption("No duplicates found (or deduplication was off).")
        return
    pairs = duplicate_pairs(clusters, samples)
    with_text = [p for p in pairs if p["duplicate_text"]]
    missing = tuple(sorted({p["kept"] for p in with_text[:side_by_side] if not p["kept_text"]}))
    if missing:
        found = kept_texts(str(folder), missing, _mtime(folder))
        for p in with_text:
            p["kept_text"] = p["kept_text"] or found.get(p["kept"])
    st.caption(f"{len(clusters):,} group(s) of copies: the first document of each group is kept, the rest dropped. "
               + (f"The first {min(side_by_side, len(with_text))} dropped copies side by side with what they copy:"
                  if with_text else ""))
    for p in with_text[:side_by_side]:
        with st.container(border=True):
            left, right = st.columns(2)
            left.caption(f"Kept: `{p['kept']}`")
            right.caption(f"Dropped: `{p['duplicate']}` · similarity ≈ {p['jaccard']:.2f}")
            with left, st.container(height=200, border=False):
                st.text(p["kept_text"] or "(Not found in the shards: it may have been deleted.)", width="stretch")
            with right, st.container(height=200, border=False):
                st.text(p["duplicate_text"], width="stretch")
    st.dataframe(pd.DataFrame([{k: p[k] for k in ("kept", "duplicate", "jaccard")} for p in pairs]),
                 hide_index=True, column_config={
                     "kept": st.column_config.TextColumn("Kept document"),
                     "duplicate": st.column_config.TextColumn("Dropped copy"),
                     "jaccard": st.column_config.NumberColumn("Similarity", format="%.2f",
                                                              help="Estimated Jaccard similarity (1 = same words)")})


def unreadable_view(result: dict) -> None:
    errors, count = result.get("read_errors") or [], result.get("read_error_count", 0)
    if not count:
        st.caption("Every record could be read.")
        return
    st.caption(f"{count:,} record(s) could not be read and were skipped" +
               (f"; the first {len(errors)} are listed." if count > len(errors) else "."))
    st.dataframe(pd.DataFrame(errors, columns=["source", "location", "reason"]), hide_index=True, column_config={
        "source": st.column_config.TextColumn("File"), "location": st.column_config.TextColumn("Where"),
        "reason": st.column_config.TextColumn("What was wrong")})


def shards_view(shards: list) -> None:
    if not shards:
        st.caption("No shards were written.")
        return
    st.dataframe(pd.DataFrame([shard_row(s) for s in shards]), hide_index=True, column_config={
        "shard": st.column_config.TextColumn("Shard file"),
        "documents": st.column_config.NumberColumn("Documents", format="%d"),
        "size": st.column_config.TextColumn("Size on disk")})
    st.caption("WebDataset shards: tar files holding `<key>.txt` (the text) and `<key>.json` (id, source) for "
               "each document. A training job streams them one after the other.")


def shard_row(shard) -> dict:
    """A shard as the run recorded it (a path, or a dict with path and documents) -> a table row."""
    path = Path(shard["path"] if isinstance(shard, dict) else shard)
    docs = shard.get("documents") if isinstance(shard, dict) else None
    try:
        stat = path.stat()
    except OSError:
        return {"shard": path.name, "documents": docs, "size": "missing"}
    if docs is None:
        docs = _count_documents(str(path), stat.st_mtime)
    return {"shard": path.name, "documents": docs, "size": charts.fmt_bytes(stat.st_size)}


@st.cache_data(show_spinner=False, max_entries=64)
def kept_texts(folder: str, ids: tuple[str, ...], mtime: float, max_docs: int = 50_000) -> dict[str, str]:
    """{id: text} of the documents `ids` found in a run's shards within the first `max_docs` documents. The kept
    copy of a near-duplicate pair is not among the samples (only dropped documents are), but it is in the shards,
    usually early: the first copy is the one kept."""
    from llmfs.data.readers import read_documents

    wanted, found = set(ids), {}
    try:
        for n, doc in enumerate(read_documents(folder)):
            if doc.id in wanted:
                found[doc.id] = doc.text[:SAMPLE_CHARS]
            if len(found) == len(wanted) or n >= max_docs:
                break
    except (ValueError, OSError):
        pass  # shards deleted or unreadable: the view shows the ids alone
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=256)
def _count_documents(path: str, mtime: float) -> int | None:
    """Documents in a shard (its .txt members); the tar headers are read, the texts skipped."""
    try:
        with tarfile.open(path) as tar:
            return sum(1 for m in tar if m.name.endswith(".txt"))
    except (OSError, tarfile.TarError):
        return None
