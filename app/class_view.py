"""The class, for the instructor (behind the password, in the instructor view): a leaderboard for one benchmark,
everyone's curves for one lesson overlaid, and the class presets in force. Everything comes from
`llmfs.classroom`, read from the run folders and the preset files on every rerun.

Names and run names are people's text: shown in tables (which show text as written), escaped in Markdown
(`md_escape`) and in plotly's labels (`charts.legend_text`).
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from llmfs import classroom

from . import charts, state
from .eval_view import CHANCE, TASK_LABELS
from .text import md_escape

KEY = "instructor.class"
PLOT_CONFIG = {"displaylogo": False}
CURVE_MEASURES = {"loss": "Training loss", "eval_loss": "Held-out loss"}
HOW_TO_PRESET = ("**To make one**: open a lesson page, set its form as the class should start, and press **Make "
                 "these the class preset** in the box *Settings files* under the form (it is there while this "
                 "view is unlocked, in this browser). Every "
                 "participant's form on that page then starts from those settings; they can still change them. "
                 "Removing a preset here sends the page back to its own defaults.")


def class_section() -> None:
    """The three class views, one tab each."""
    st.subheader(":material/groups: The class")
    runs = state.manager().list_runs()
    board, lines, presets = st.tabs([":material/leaderboard: Leaderboard", ":material/show_chart: Everyone's curves",
                                     ":material/school: Class presets"])
    with board:
        leaderboard_section(runs)
    with lines:
        curves_section(runs)
    with presets:
        presets_section()


def task_name(task: str) -> str:
    return TASK_LABELS.get(task, task)


# -- leaderboard --------------------------------------------------------------------------------------------------
def leaderboard_section(runs) -> None:
    tasks = classroom.tasks_with_results(runs)
    if not tasks:
        st.info("No finished evaluation yet: once participants evaluate a model on L14, each one's best score per "
                "benchmark is ranked here.", icon=":material/leaderboard:")
        return
    left, right = st.columns(2)
    task = left.selectbox("Benchmark", tasks, format_func=task_name, key=f"{KEY}.task", persist_state="session")
    measures = classroom.metrics_of(runs, task)
    metric = right.selectbox("Measure", measures, format_func=charts.metric_axis, key=f"{KEY}.metric.{task}",
                             persist_state="session")
    rows = classroom.leaderboard(runs, task, metric)
    if not rows:
        st.caption("No score for this measure yet.")
        return
    st.dataframe(leaderboard_table(rows), hide_index=True, placeholder="–", key=f"{KEY}.board", column_config={
        "rank": st.column_config.NumberColumn("Rank", width="small"),
        "participant": "Participant",
        "score": st.column_config.TextColumn(
            "Score ± stderr", help="Their best score ± one standard error (how much it would move on another sample "
                                   "of questions of the same size)"),
        "tested": st.column_config.TextColumn("Model / adapter", help="What was evaluated"),
        "questions": st.column_config.NumberColumn("Questions", help="Questions (or documents) scored"),
        "few-shot": st.column_config.NumberColumn("Few-shot", help="Worked examples shown before each question"),
        "evaluations": st.column_config.NumberColumn("Tries", help="Their evaluations on this benchmark; the best "
                                                                   "is shown"),
        "finished": st.column_config.DatetimeColumn("Finished", format="D MMM, HH:mm"),
        "run name": "Run name",
        "run": st.column_config.LinkColumn("Run", display_text=r"run=(.*)$",
                                           help="The evaluation behind the score, on the Runs page")})
    st.plotly_chart(leaderboard_figure(rows, task, metric), key=f"class:board:{task}:{metric}", config=PLOT_CONFIG)
    st.caption("Each bar is one participant's best evaluation; the whisker is ± one standard error. Two bars whose "
               "whiskers overlap are not told apart by this many questions.")
    differ = classroom.caveats(rows)
    if differ:
        st.warning("Not directly comparable: these scores were measured with different "
                   + md_escape("; ".join(differ)) + ". "
                   "Fewer questions give a noisier score; compare like with like (the same number of questions, "
                   "few-shot examples and data) before naming a winner.", icon=":material/compare_arrows:")


def leaderboard_table(rows: list[dict]) -> pd.DataFrame:
    table = [{"rank": r["rank"], "participant": r["user"], "score": score_text(r),
              "tested": r["model"] + (f" + {r['adapter']}" if r["adapter"] else ""), "questions": r["n_items"],
              "few-shot": r["num_fewshot"], "evaluations": r["runs"],
              "finished": dt.datetime.fromtimestamp(r["when"]) if r["when"] else None,
              "run name": r["run_name"] or None, "run": f"runs?run={r['run_id']}"} for r in rows]
    return pd.DataFrame(table, columns=["rank", "participant", "score", "tested", "questions", "few-shot",
                                        "evaluations", "finished", "run name", "run"])


def score_text(row: dict) -> str:
    return f"{row['score']:.3f} ± {row['stderr']:.3f}" if row["stderr"] is not None else f"{row['score']:.4g}"


def leaderboard_figure(rows: list[dict], task: str, metric: str) -> go.Figure:
    """One bar per participant (best first) with its standard error; the y axis says what is measured on which
    benchmark and which way is better."""
    bars = [{"model": charts.legend_text(r["user"]), "value": r["score"], "stderr": r["stderr"], "n": r["n_items"]}
            for r in rows]
    fig = charts.eval_comparison_figure(bars, metric, CHANCE.get(task))
    better = "lower" if classroom.lower_is_better(metric) else "higher"
    # the benchmark in the title, the measure on the axis: one long axis title was cut at both ends
    fig.update_layout(title_text=f"{task_name(task)}: each participant's best", yaxis_title_text=(
        f"{charts.metric_name(metric)}<br>({better} is better)"), xaxis_title_text="Participant")
    fig.update_xaxes(type="category")  # a participant called "42" is a name, not a number on an axis
    return fig


# -- everyone's curves --------------------------------------------------------------------------------------------
def curves_section(runs) -> None:
    lessons = classroom.lessons_with_runs(runs)
    if not lessons:
        st.info("No training run yet: once participants train on a lesson page, their loss curves are overlaid "
                "here, one line per person.", icon=":material/show_chart:")
        return
    left, right = st.columns(2)
    lesson = left.selectbox("Lesson", lessons, format_func=state.owner_label, key=f"{KEY}.lesson",
                            persist_state="session")
    metric = right.segmented_control("Measure", list(CURVE_MEASURES), format_func=CURVE_MEASURES.get,
                                     default="loss", required=True, key=f"{KEY}.curve_metric",
                                     persist_state="session") or "loss"
    every = st.toggle("Every run, not only each participant's newest", key=f"{KEY}.every_run",
                      persist_state="session")
    series = classroom.curves(runs, lesson, metric, every_run=every)
    if not series:
        what = "held-out loss (it is measured every few steps)" if metric == "eval_loss" else "training step"
        st.caption(f"No run of this lesson has a {what} yet.")
        return
    st.plotly_chart(curves_figure(series, metric, every), key=f"class:curves:{lesson}:{metric}:{every}",
                    config=PLOT_CONFIG)
    people = len({s["user"] for s in series})
    st.caption(("One line per run" if every else "One line per participant: their newest run of this lesson")
               + f" ({people} participant{'s' if people != 1 else ''}). Lower is better. "
               + ("Held-out loss is measured on text the model never trained on: a line that rises while the "
                  "training loss still falls is a model learning its training text by heart."
                  if metric == "eval_loss" else
                  "Lines that fall faster learned faster; where they end tells who got furthest. Different "
                  "settings (learning rate, LoRA rank, batch size) make different curves: ask who chose what.")
               + " Click a name in the legend to hide its line.")
    st.button("Refresh", icon=":material/refresh:", key=f"{KEY}.refresh",
              help="Read the runs again (a run still training has new steps).")


def series_name(s: dict, every: bool) -> str:
    if not every:
        return s["user"]
    return f"{s['user']} · {s['run_name'] or s['run_id'][-6:]}"


def curves_figure(series: list[dict], metric: str, every: bool = False) -> go.Figure:
    """One line per series (`classroom.curves`), named by its participant (and run, with `every`)."""
    colors = charts.run_colors({s["run_id"]: {} for s in series}, [])
    label = CURVE_MEASURES.get(metric, charts.metric_name(metric)).lower()
    traces = []
    for s in series:
        name = charts.legend_text(series_name(s, every))
        few = len(s["steps"]) <= charts.MARKERS_UP_TO
        traces.append({"type": "scatter", "x": s["steps"], "y": s["values"], "name": name,
                       "mode": "lines+markers" if few else "lines",
                       "line": {"color": colors[s["run_id"]], "width": 2},
                       "marker": {"color": colors[s["run_id"]], "size": 5},
                       "hovertemplate": f"<b>{name}</b><br>step %{{x}}<br>{label} %{{y:.3f}}<extra></extra>"})
    layout = {"height": charts.HEIGHT + 80, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "hovermode": "closest",
              "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
              "xaxis": {"title": {"text": "Step"}, "zeroline": False},
              "yaxis": {"title": {"text": f"{CURVE_MEASURES.get(metric, metric)} (lower is better)"},
                        "zeroline": False}}
    return go.Figure(data=traces, layout=layout)


# -- class presets ------------------------------------------------------------------------------------------------
def page_label(page: str) -> str:
    """A preset's form by its page (`l12` -> "L12 Pretrained weights"; `l12.freeze` -> "... (freeze)")."""
    base, _, part = page.partition(".")
    return state.owner_label(base) + (f" ({part})" if part else "")


def presets_section() -> None:
    presets = classroom.list_presets()
    st.markdown(HOW_TO_PRESET)
    if not presets:
        st.caption("No class preset yet: every page starts from its own defaults.")
        return
    for page, preset in presets.items():
        with st.container(border=True):
            row = st.container(horizontal=True, vertical_alignment="center")
            saved = dt.datetime.fromtimestamp(preset.get("saved") or 0).strftime("%d %b, %H:%M")
            row.markdown(f"**{md_escape(page_label(page))}** · form `{page}` · saved {saved} by "
                         f"{md_escape(preset.get('by') or '?')}")
            row.button("Remove", key=f"{KEY}.remove:{page}", icon=":material/delete:", on_click=_remove, args=(page,),
                       help="Participants' forms on this page start from the page's own defaults again.")
            st.dataframe(settings_table(preset.get("values") or {}), hide_index=True, key=f"{KEY}.preset:{page}")


def settings_table(values: dict) -> pd.DataFrame:
    return pd.DataFrame([{"setting": k, "value": v if isinstance(v, str) else json.dumps(v)}
                         for k, v in values.items()], columns=["setting", "value"])


def _remove(page: str) -> None:
    classroom.delete_preset(page)
    st.toast(f"Removed the class preset of {md_escape(page_label(page))}.", icon=":material/delete:")
