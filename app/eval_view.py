"""The L14 page's parts: the model and benchmark pickers, the live panel of an evaluation, the table and charts of
every finished evaluation on disk (with before / after fine-tuning), and the drill-down into the questions a model
got wrong.

Like every panel, all of it reads run folders only: `results.json` (scores with standard errors) and
`items.jsonl` (one record per question) that `llmfs.eval.runner.write_results` leaves, and the live
`kind="eval_progress"` records in metrics.jsonl.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from llmfs import adapters as adapter_lib
from llmfs.config import DEFAULT_MODEL, ConfigError, EvalConfig
from llmfs.eval.metrics import LOWER_IS_BETTER, main_metric
from llmfs.eval.runner import preflight_eval
from llmfs.eval.tasks import FORMATS, TASK_INFO, example_files
from llmfs.runs import FINAL_STATES, INTERRUPTED, RUNNING, SUCCEEDED, Run
from llmfs.sources import BUILTIN_MODELS, SourceError

from . import adapter_view, charts, identity, panels, state
from .choices import model_name, saved_models, short_id, trained_models  # noqa: F401 (the page's API)
from .forms import MODEL_SOURCES
from .uploads import fmt_mb, save_upload, upload_limit_mb

PLOT_CONFIG = {"displaylogo": False}
TASKS = list(TASK_INFO)
TASK_LABELS = {"llmfs-cloze": "llmfs-cloze", "perplexity": "Perplexity", "hellaswag": "HellaSwag", "mmlu": "MMLU",
               "truthfulqa_mc1": "TruthfulQA MC1", "truthfulqa_mc2": "TruthfulQA MC2",
               "custom": "Your own questions"}   # short: the pills show them whole; TASK_INFO explains each
OFFLINE_TASKS = ("llmfs-cloze", "perplexity")   # have built-in data; the others need a file offline
CHANCE = {"llmfs-cloze": 0.25, "hellaswag": 0.25, "mmlu": 0.25}
DATA_KINDS = {"default": "The official dataset from the Hugging Face hub (needs a network)",
              "builtin": "Built in: held-out text of llmfs-corpus",
              "wikitext": "WikiText-2 from the hub (needs a network)",
              "upload": "Upload a .jsonl file", "path": "A file on this machine"}
TABLE_COLUMNS = ("model", "task", "metric", "score", "n", "few-shot", "data", "date", "run")
WRONG_SHOWN = 10   # questions opened one by one below the table of wrong answers
MARKDOWN_CHARS = re.compile(r"([\\`*_\[\]<>~$|])")  # what makes emphasis, code, links, colours or math in a label


# -- what to evaluate ---------------------------------------------------------------------------------------------
def models_picker(key: str) -> list[str]:
    """The built-in models (llmfs-tiny, smollm2-135m), the models of finished training runs (in a workshop: this
    person's, or everyone's with share_runs = "all"), the models they saved, and any folders or hub ids typed in."""
    trained = [m for m in trained_models() if identity.may_see_texts(m["user"])]
    saved = saved_models()
    options = list(BUILTIN_MODELS) + [m["path"] for m in trained] + saved
    labels = {**{name: MODEL_SOURCES.get(name, name) for name in BUILTIN_MODELS},
              **{m["path"]: m["label"] for m in trained},
              **{path: f"{Path(path).name} (saved model)" for path in saved}}
    picked = st.multiselect("Models", options, default=[DEFAULT_MODEL], format_func=labels.get, key=f"{key}.models",
                            persist_state="session",
                            help="Pick several to compare them on the same questions. Fine-tuned models appear "
                                 "here when a training run (L12, L15, L16) finishes, saved ones when L12 or L15 "
                                 "saves them.")
    paths = identity.shows_paths()  # a participant knows no server path to type: hub ids (or a shared folder)
    more = st.text_input("More models: folders or hub ids, separated by commas" if paths else
                         "More models: hub ids, separated by commas", key=f"{key}.more", persist_state="session",
                         placeholder="/path/to/model-folder, gpt2" if paths else "gpt2",
                         help="A folder holding a Hugging Face causal LM (config.json and weights), or a hub id "
                              "(downloaded once; needs a network)." if paths else
                              "A Hugging Face hub id (downloaded once; needs a network), or a folder the instructor "
                              "shared.")
    return picked + [m.strip() for m in more.split(",") if m.strip()]


def adapters_picker(key: str) -> list[str]:
    """LoRA adapters (PEFT's format) to test on top of every model picked, next to the models alone: those of the
    adapter library (L15) this person may use, picked by name, and any other adapter folders typed in."""
    usable = {str(a.path): a for a in adapter_view.usable(adapter_lib.list_adapters())}
    # adapter_view.picker: a renamed adapter shows its new name here too (the browser keeps option texts)
    picked = adapter_view.picker(st, "LoRA adapters (optional)", list(usable),
                                 lambda p: adapter_view.adapter_label(usable[p]), f"{key}.adapter_pick", multi=True,
                                 placeholder="Pick adapters from the library" if usable else "No adapters yet",
                                 help="From the adapter library (L15: trained there, or uploaded). Each adapter is "
                                      "tested on top of every model above, and the models are also tested alone, so "
                                      "you see what the adapter adds.")
    picked = [p for p in picked if p in usable]   # one deleted since it was picked
    if not usable:
        st.caption("No adapters in the library yet: train one in L15 (LoRA), or upload one there.")
    with st.expander("An adapter folder that is not in the library"):
        text = st.text_input("Adapter folders, separated by commas", key=f"{key}.adapters", persist_state="session",
                             placeholder="/path/to/adapter" if identity.shows_paths() else None,
                             help="A folder with adapter_config.json and adapter_model.safetensors (what PEFT and "
                                  "the LoRA lesson save).")
    return picked + [a.strip() for a in text.split(",") if a.strip()]


def tasks_picker(key: str) -> dict[str, str | None]:
    """The benchmarks to run, each with where its questions come from: {task: data} (data "" = the task's default,
    None while a benchmark still lacks its file). Short names to pick from; what each measures, where its questions
    come from and the format of a file for it, in a box per benchmark picked."""
    tasks = st.pills("Benchmarks", TASKS, selection_mode="multi", default=["llmfs-cloze"],
                     format_func=TASK_LABELS.get, key=f"{key}.tasks", persist_state="session", wrap=True,
                     help="Pick one or more; what each one measures appears below it once picked.")
    picked = {}
    for task in [t for t in TASKS if t in tasks]:
        with st.container(border=True):
            st.markdown(f"**{TASK_LABELS[task]}**")
            st.caption(TASK_INFO[task])
            picked[task] = "" if task == "llmfs-cloze" else _data_picker(key, task)
    return picked


def _data_picker(key: str, task: str) -> str | None:
    kinds = ["builtin", "wikitext"] if task == "perplexity" else [] if task == "custom" else ["default"]
    kinds += ["upload", "path"]
    source = {"perplexity": "Text to score", "custom": "Your questions"}.get(task, f"Questions for {TASK_LABELS[task]}")
    upload = "Upload a .txt or .jsonl file" if task == "perplexity" else DATA_KINDS["upload"]
    kind = st.selectbox(source, kinds, format_func=lambda k: upload if k == "upload" else DATA_KINDS[k],
                        key=f"{key}.{task}.kind", persist_state="session",
                        index=0 if task in OFFLINE_TASKS or task == "custom" else kinds.index("upload"))
    if kind in ("builtin", "default"):
        return ""
    if kind == "wikitext":
        return "wikitext"
    format_help(key, task)
    if kind == "path":
        path = st.text_input("Path on this machine", key=f"{key}.{task}.path", persist_state="session",
                             placeholder="/data/questions.jsonl" if identity.shows_paths() else None)
        if not path.strip():
            st.caption(f"Give the path of {file_noun(task)}.")
            return None
        return path.strip()
    return _upload(key, task)


def file_noun(task: str) -> str:
    """`your HellaSwag file`, `your questions file`, `your text file`: the file a benchmark reads, in a sentence."""
    return {"custom": "your questions file", "perplexity": "your text file"}.get(task,
                                                                               f"your {TASK_LABELS[task]} file")


def format_help(key: str, task: str) -> None:
    """What a file for `task` must hold, field by field, a line of its example and the example files to download
    (`llmfs.eval.tasks.examples`: files its loader, and so the upload check, accepts)."""
    st.markdown("**Format of the file**")
    for intro, fields in FORMATS.get(task, []):
        st.markdown(plain(intro) + "\n" + "\n".join(f"- `{name}`: {plain(what)}" for name, what in fields))
    files = example_files(task)
    if files:
        label, name, data = files[0]
        text = data.decode("utf-8")
        if name.endswith(".jsonl"):
            st.caption("A line of the example file:")
            text = text.splitlines()[0]
        else:
            st.caption("The example file:")
        st.code(text, language=None, wrap_lines=True)
        row = st.container(horizontal=True)
        for i, (label, name, data) in enumerate(files):
            row.download_button(label, data, file_name=name, key=f"{key}.{task}.example.{i}",
                                mime="text/plain" if name.endswith(".txt") else "application/jsonl",
                                icon=":material/download:", on_click="ignore",
                                help="A small file in this format: a start for your own, or a quick try.")


def _upload(key: str, task: str) -> str | None:
    limit = upload_limit_mb()
    noun = file_noun(task)
    upload = st.file_uploader(f"{noun[0].upper() + noun[1:]} (up to {fmt_mb(limit)})", type=["jsonl", "txt"]
                              if task == "perplexity" else ["jsonl"],
                              key=f"{key}.{task}.upload", max_upload_size=max(1, math.ceil(limit)))
    if upload is None:
        st.caption(f"Upload {file_noun(task)}, or pick another source above.")
        return None
    saved: dict = st.session_state.setdefault(f"{key}.saved", {})
    if upload.file_id not in saved:   # save once, not on every rerun
        try:
            saved[upload.file_id] = str(save_upload(upload, kind="benchmark", task=task))
        except ValueError as e:
            st.error(plain(str(e)) + "\n\nThe format, with example files to download, is just above the upload "
                     "box.", icon=":material/error:")
            return None
    return saved[upload.file_id]


def plan(base: EvalConfig | None, models: list[str], tasks: dict[str, str | None],
         adapters: list[str] = ()) -> list[EvalConfig] | None:
    """One config per (model, task), or None (with the reason shown) when something is missing or refused."""
    if base is None or None in tasks.values():
        return None
    if not models or not tasks:
        st.warning("Pick at least one model and one benchmark.", icon=":material/rule:")
        return None
    try:
        return [base.replace(model=m, adapter=a, task=t, data=d, num_fewshot=base.num_fewshot if t == "mmlu" else 0)
                for m in models for a in ["", *adapters] for t, d in tasks.items()]
    except ConfigError as e:
        st.error(plain(str(e)), icon=":material/error:")
        return None


def submit_all(key: str, cfgs: list[EvalConfig]) -> None:
    """Check every evaluation first (missing files, windows too long), then queue them all, one job each."""
    try:
        for cfg in cfgs:
            state.jobs().admit("eval", cfg)  # the workshop's rules first: a refused path is never opened
            preflight_eval(cfg)
    except (ConfigError, SourceError, ValueError, OSError) as e:
        st.error(plain(str(e)), icon=":material/error:")
        return
    try:
        ids = state.jobs().submit_batch([("eval", cfg) for cfg in cfgs], owner=key)
    except ValueError as e:  # a workshop limit (LimitError): nothing was queued
        st.error(plain(str(e)), icon=":material/error:")
        return
    for run_id in ids:
        state.remember(key, run_id)
    st.session_state[f"{key}.batch"] = ids
    st.rerun()


# -- the live panel -----------------------------------------------------------------------------------------------
def latest_panels(key: str, start: str) -> None:
    """The panels of the evaluations started last from this page (after a refresh: the newest one)."""
    batch = [r for r in st.session_state.get(f"{key}.batch", []) if r in state.recalled(key)]
    if not batch:   # a new session (a refresh): every evaluation of this page still going, else the newest
        me = identity.current_user()
        batch = [r.run_id for r in reversed(state.jobs().list_runs())
                 if r.kind == "eval" and r.state not in FINAL_STATES and r.status().get("owner") == key
                 and identity.is_mine(r.status().get("user"), me)]
        batch = batch or ([state.latest(key)] if state.latest(key) else [])
    if not batch:
        st.info(f"No evaluation yet. Press **{start}**: progress and the running score appear here, live.",
                icon=":material/fact_check:")
        return
    for run_id in batch:
        with st.container(border=True):
            eval_panel(run_id)


def eval_panel(run_id: str, *, poll_s: float = panels.POLL_S) -> None:
    """Status, progress and running score of one evaluation, live while it runs; its scores once it is done."""
    panels.live_fragment(run_id, _panel_body, poll_s=poll_s)


def _panel_body(run, was_live: bool) -> None:
    run_id = run.run_id
    status, cfg = run.status(), run.config()
    run_state = status.get("state", INTERRUPTED)
    if was_live and run_state in FINAL_STATES:
        st.rerun(scope="app")  # redraw once still: polling stops, the results table picks the run up
    progress = charts.by_step(charts.of_kind(panels.records_of(run_id), "eval_progress"))
    st.markdown(f"**{plain(tested_label(cfg, status.get('result')))}** on **{plain(task_label(cfg))}**")
    counted = status.get("progress") or {}
    panels._header(run, status, run_state, progress or ([counted] if counted.get("total") else []))
    result = status.get("result") or {}
    if run_state == SUCCEEDED and result:
        _scores(result)
    elif run_state == RUNNING and counted.get("total") and not progress:  # items read, the first chunk scoring
        st.progress(0, text=f"Scoring the first of {counted['total']:,} questions…")
    elif progress:
        last, unit = progress[-1], "documents" if cfg.get("task") == "perplexity" else "questions"
        shown = live_metrics(last)
        running = ", ".join(f"{charts.metric_name(k)} {last[k]:.3f}" for k in shown)
        st.progress(min(1.0, last["done"] / max(last["total"], 1)),
                    text=f"{last['done']:,} of {last['total']:,} {unit} · so far: {running}")
        if len(progress) > 1:
            st.plotly_chart(charts.running_score_figure(progress, shown), key=f"running:{run_id}",
                            config=PLOT_CONFIG)
    elif run_state == RUNNING:
        st.progress(0, text="Loading the model and the questions…")
    panels._log(run)


def live_metrics(record: dict) -> list[str]:
    """What the live panel follows: both accuracies of a multiple-choice task, else the task's main measure
    (bits per byte for perplexity: word perplexity of a small model runs into the billions and flattens a chart)."""
    present = [k for k in charts.METRIC_NAMES if k in record]
    if not present:
        return []
    return [k for k in ("acc", "acc_norm") if k in present] or [main_metric(present)]


def _scores(result: dict) -> None:
    metrics = result.get("metrics") or {}
    names = [k for k in metrics if not k.endswith("_stderr") and metrics[k] is not None][:4]
    cols = st.columns(max(len(names), 1))
    for col, name in zip(cols, names):
        err = metrics.get(f"{name}_stderr")
        col.metric(charts.metric_name(name).capitalize(), f"{metrics[name]:.3g}",
                   delta=f"± {err:.3f}" if err else None, delta_color="off", delta_arrow="off",
                   help="± one standard error: the score would move about this much on another sample of "
                        "questions of the same size.")
    stopped = " · stopped early: scores are for the questions done" if result.get("stopped") else ""
    n = result.get("n_items", 0)
    unit = ("document" if result.get("kind") == "perplexity" else "question") + ("s" if n != 1 else "")
    st.caption(f"{n:,} {unit} from {plain(identity.shown(str(result.get('source', '?'))))} · "
               f"{panels.fmt_duration(result.get('seconds') or 0)}{stopped}")


# -- every finished evaluation ------------------------------------------------------------------------------------
def finished_evals() -> list[Run]:
    return [r for r in state.jobs().list_runs()
            if r.kind == "eval" and r.state == SUCCEEDED and (r.status().get("result") or {}).get("metrics")]


def adapter_shown(path: str, recorded: str | None = None) -> str:
    """An adapter as results name it: its name in the adapter library now (a rename shows), else the name it had
    when it was tested, else its folder (a run's adapter folder is called "adapter": then the run)."""
    try:
        return adapter_lib.read_adapter(path).name
    except (ValueError, OSError, KeyError, TypeError):   # deleted, or not readable any more (AdapterError: ValueError)
        folder = Path(path)
        return recorded or (f"adapter of run {short_id(folder.parent.name)}" if folder.name == "adapter"
                            else folder.name)


def tested_label(cfg: dict, result: dict | None = None) -> str:
    """What an evaluation tested: the model, and the adapter on it by name (`llmfs-tiny + my-adapter`)."""
    adapter = (cfg.get("adapter") or "").strip()
    model = model_name(cfg.get("model", "?"))
    return f"{model} + {adapter_shown(adapter, (result or {}).get('adapter_name'))}" if adapter else model


def task_label(cfg: dict) -> str:
    """The benchmark by its name, with the data file when it is not the benchmark's own (`HellaSwag (mine.jsonl)`)."""
    task = cfg.get("task", "?")
    data = (cfg.get("data") or "").strip()
    return TASK_LABELS.get(task, task) + (f" ({Path(data).name})" if data and data != "wikitext" else
                                          " (WikiText-2)" if data == "wikitext" else "")


def result_rows(runs: list[Run]) -> list[dict]:
    """One row per (run, metric): the long table the page shows and charts are cut from. `model` names what was
    tested: the model and, on it, the adapter by its library name."""
    rows = []
    for run in runs:
        status = run.status()
        result, cfg = status.get("result") or {}, run.config()
        metrics = result.get("metrics") or {}
        model = tested_label(cfg, result)
        for name, value in metrics.items():
            if name.endswith("_stderr") or value is None:
                continue
            err = metrics.get(f"{name}_stderr")
            rows.append({"model": model, "task": result.get("task", cfg.get("task")),
                         "metric": name, "value": value, "stderr": err,
                         "score": f"{value:.3f} ± {err:.3f}" if err is not None else f"{value:.4g}",
                         "n": result.get("n_items"), "few-shot": cfg.get("num_fewshot") or 0,
                         "data": Path(cfg["data"]).name if cfg.get("data") else "default",
                         "date": dt.datetime.fromtimestamp(status.get("finished") or status.get("created") or 0),
                         "run": run.run_id, "source": cfg.get("model", "")})
    return rows


def newest_per_model(rows: list[dict], task: str, metric: str) -> list[dict]:
    """The chart's bars: for each model, its newest score on `task` / `metric` (rows come newest first)."""
    seen: dict[str, dict] = {}
    for r in rows:
        if r["task"] == task and r["metric"] == metric and r["model"] not in seen:
            seen[r["model"]] = r
    return list(seen.values())


def results_section(key: str) -> None:
    rows = result_rows(finished_evals())
    if not rows:
        st.info("No finished evaluation yet: its scores land here, and stay (they are read from the run folders).",
                icon=":material/table_chart:")
        return
    # a column left out of column_order still reaches the browser: "source" (a server path) must not be in the data
    table = pd.DataFrame(rows).drop(columns="source")
    table["task"] = table["task"].map(lambda t: TASK_LABELS.get(t, t))
    st.dataframe(table, hide_index=True, placeholder="–", column_order=TABLE_COLUMNS, column_config={
        "model": "Model", "task": "Benchmark", "metric": "Measure",
        "score": st.column_config.TextColumn("Score ± stderr", help="The score ± one standard error (none for "
                                                                     "perplexity: it is one number over all text)"),
        "n": st.column_config.NumberColumn("Questions", help="Questions (or documents) scored"),
        "few-shot": st.column_config.NumberColumn("Few-shot", help="Worked examples shown before each question"),
        "data": "Data", "date": st.column_config.DatetimeColumn("Finished", format="D MMM, HH:mm"), "run": "Run"})
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    for tab, task in zip(st.tabs([TASK_LABELS.get(t, t) for t in tasks]), tasks):
        with tab:
            metrics = list(dict.fromkeys(r["metric"] for r in rows if r["task"] == task))
            metric = st.selectbox("Measure", metrics, index=metrics.index(main_metric(metrics)),
                                  format_func=charts.metric_axis, key=f"{key}.metric.{task}", persist_state="session")
            bars = newest_per_model(rows, task, metric)
            st.plotly_chart(charts.eval_comparison_figure(bars, metric, CHANCE.get(task)),
                            key=f"compare:{task}:{metric}", config=PLOT_CONFIG)
            if len(bars) > 1:
                st.caption(overlap_note(bars, metric))
    before_after_section(rows)


def overlap_note(bars: list[dict], metric: str) -> str:
    """Whether the best model's lead is larger than the noise (two standard errors of the difference)."""
    best, second = sorted(bars, key=lambda r: r["value"], reverse=metric not in LOWER_IS_BETTER)[:2]
    if best.get("stderr") is None or second.get("stderr") is None:
        return "Each bar is the model's newest score on this benchmark."
    noise = 2 * (best["stderr"] ** 2 + second["stderr"] ** 2) ** 0.5
    gap = abs(best["value"] - second["value"])
    first, other = plain(best["model"]), plain(second["model"])
    if gap == 0:
        return f"**{first}** and **{other}** score the same here."
    verdict = "larger than" if gap > noise else "within"
    return (f"**{first}** leads **{other}** by {gap:.3f}, {verdict} the noise (±{noise:.3f}, two "
            "standard errors of the difference)" + ("." if gap > noise else ": more questions would tell them apart."))


def before_after(rows: list[dict]) -> list[dict]:
    """For each training run's model scored on a task its base model was also scored on: the two scores side by
    side ({"label", "task", "metric", "before", "before_stderr", "after", "after_stderr"})."""
    bases = {m["path"]: m for m in trained_models()}
    pairs = []
    for task in dict.fromkeys(r["task"] for r in rows):
        metric = main_metric([r["metric"] for r in rows if r["task"] == task])
        newest = {}
        for r in rows:
            if r["task"] == task and r["metric"] == metric:
                newest.setdefault(r["source"], r)
        for source, after in newest.items():
            trained = bases.get(source)
            before = trained and newest.get(trained["base"])
            if before:
                pairs.append({"label": trained["label"], "task": task, "metric": metric, "before": before["value"],
                              "before_stderr": before["stderr"], "after": after["value"],
                              "after_stderr": after["stderr"]})
    return pairs


def before_after_section(rows: list[dict]) -> None:
    st.markdown("##### Before and after fine-tuning")
    pairs = before_after(rows)
    if not pairs:
        st.caption("Evaluate a fine-tuned model (listed under *Models* once a training run finishes) **and** the "
                   "model it started from on the same benchmark: the two scores appear here side by side.")
        return
    for label in dict.fromkeys(p["label"] for p in pairs):
        st.markdown(f"**{plain(label)}**")
        mine = [p for p in pairs if p["label"] == label]
        st.plotly_chart(charts.before_after_figure(mine), key=f"before-after:{label}", config=PLOT_CONFIG)


# -- what the model got wrong -------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=8)
def read_items(path: str, mtime: float) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def items_of(run: Run) -> list[dict]:
    path = run.path / "items.jsonl"
    return read_items(str(path), path.stat().st_mtime) if path.is_file() else []


def is_wrong(item: dict, by: str) -> bool:
    if "choices" in item:
        if "labels" in item:   # TruthfulQA MC2: wrong when the top choice is a false answer
            return not item.get("correct")
        return item["predicted_norm" if by == "acc_norm" else "predicted"] != item["gold"]
    return not item.get("exact_match", True)


def wrong_items_section(key: str) -> None:
    scored = [r for r in finished_evals() if (r.path / "items.jsonl").is_file()]
    runs = [r for r in scored if identity.may_see_texts(r.status().get("user"))]
    if len(runs) < len(scored):
        panels.withheld("Other people's evaluations are in the table above; the questions they scored are visible "
                        "to the person who ran them and to the instructor.")
    if not runs:
        st.caption("After an evaluation, every question it scored can be read here.")
        return
    labels = {r.run_id: f"{tested_label(r.config(), r.status().get('result'))} on {task_label(r.config())} · "
                        f"{short_id(r.run_id)}" for r in runs}
    run_id = st.selectbox("Evaluation", list(labels), format_func=labels.get, key=f"{key}.drill",
                          persist_state="session")
    run = state.jobs().get(run_id)
    items = items_of(run)
    if items and "choices" not in items[0] and "reference" not in items[0]:
        return surprising_documents(items)
    by = "acc"
    if any("acc_norm" in (i.get("values") or {}) for i in items):
        by = st.radio("Judge the answers by", ["acc_norm", "acc"], horizontal=True, key=f"{key}.judge",
                      persist_state="session",
                      format_func=charts.metric_name, help="acc takes the choice with the highest total "
                      "log-likelihood; acc_norm divides it by the choice's length in characters first.")
    wrong = [i for i in items if is_wrong(i, by)]
    st.markdown(f"**{len(wrong):,} of {len(items):,}** answered wrong.")
    if not wrong:
        return
    st.dataframe(pd.DataFrame([wrong_row(i, by) for i in wrong]), hide_index=True)
    for item in wrong[:WRONG_SHOWN]:
        with st.expander(f"#{item['index']} · {plain(one_line(item.get('prompt', ''), 90))}"):
            question_view(item, by)
    if len(wrong) > WRONG_SHOWN:
        st.caption(f"The table lists all {len(wrong):,}; the first {WRONG_SHOWN} can be opened one by one above.")


def one_line(text: str, n: int, keep_end: bool = True) -> str:
    """`text` on one line in at most `n` characters: its end (what a prompt leads into) or its beginning."""
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    return "…" + text[-(n - 1):] if keep_end else text[:n - 1] + "…"


def plain(text: str) -> str:
    """A question's text for a label, which Streamlit reads as Markdown: its Markdown characters escaped, so the
    data is shown as written."""
    return MARKDOWN_CHARS.sub(r"\\\1", text)


def wrong_row(item: dict, by: str) -> dict:
    if "choices" not in item:
        return {"#": item["index"], "prompt": one_line(item["prompt"], 120), "reference": item["reference"],
                "log-likelihood": item["loglik"]}
    pred = item["predicted_norm" if by == "acc_norm" else "predicted"]
    row = {"#": item["index"], "subject": item.get("group"), "prompt": one_line(item["prompt"], 120),
           "model's answer": item["choices"][pred], "right answer": item["choices"][item["gold"]]}
    return row if item.get("group") else {k: v for k, v in row.items() if k != "subject"}


def question_view(item: dict, by: str) -> None:
    """The prompt, then each choice with its log-likelihood (total and per character), the model's pick and the
    right answer."""
    st.text(item["prompt"])
    if "choices" not in item:
        st.caption(f"Reference answer (log-likelihood {item['loglik']:.2f}):")
        st.code(item["reference"], language=None, wrap_lines=True)
        return
    pred = item["predicted_norm" if by == "acc_norm" else "predicted"]
    rows = [{"choice": c, "log-likelihood": ll, "per character": ll / len(c) if c else ll,
             "": ("✓ right answer" if k == item["gold"] else "") + ("✗ model's pick" if k == pred else "")}
            for k, (c, ll) in enumerate(zip(item["choices"], item["logliks"]))]
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "log-likelihood": st.column_config.NumberColumn(format="%.2f", help="log P(choice | prompt), summed over "
                                                                            "its tokens: closer to 0 is likelier"),
        "per character": st.column_config.NumberColumn(format="%.3f", help="What acc_norm compares")})


def surprising_documents(items: list[dict]) -> None:
    """Perplexity has no wrong answers: list the documents the model found most surprising."""
    import math
    rows = [{"#": i["index"], "document": one_line(i["preview"], 140, keep_end=False), "tokens": i["tokens"],
             "token perplexity": math.exp(min(-i["loglik"] / max(i["tokens"], 1), 700))} for i in items]
    st.markdown("Perplexity has no wrong answers; these are the texts the model found **most surprising**.")
    st.dataframe(pd.DataFrame(rows).sort_values("token perplexity", ascending=False), hide_index=True,
                 column_config={"token perplexity": st.column_config.NumberColumn(format="%.1f")})
