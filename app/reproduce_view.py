""""Repeat this run", under every run's panel: the `python -m llmfs ...` command and the Python snippet that start
a new run with the same settings (`llmfs.reproduce`), each with Streamlit's copy button, and the settings as a
file that `--config` reads (`llmfs.config_files`).

In a workshop a participant sees server paths by their names (`identity.shown`), as everywhere else: the command
then says which file was used without saying where it lies, and a participant points it at their own copy.
"""

from __future__ import annotations

import streamlit as st

from llmfs import reproduce
from llmfs.config_files import dump_settings
from llmfs.runs import Run

from . import identity

INTRO = ("This command starts a new run with exactly these settings: paste it in a terminal where llmfs is installed "
         "(`pip install` this project, or its folder on the server).")


def reproduce_section(run: Run) -> None:
    """The expander "Repeat this run" for a training, evaluation or pipeline run (nothing for other kinds, or for
    a run whose settings this version can no longer read)."""
    kind = run.kind
    config = run.config()
    if kind not in reproduce.KINDS or not config:
        return
    file_name = f"{run.run_id}.toml"
    try:
        command = reproduce.command(kind, config)
        snippet = reproduce.snippet(kind, config)
        settings = dump_settings(reproduce.config_class(kind), reproduce.settings(kind, config),
                                 header=reproduce.settings_header(kind, run.run_id, file_name))
    except (TypeError, ValueError):  # an old run's config that today's settings do not describe
        return
    shown = {text: identity.shown(text) for text in (command, snippet, settings)}
    with st.expander("Repeat this run", icon=":material/replay:"):
        st.markdown(INTRO)
        st.code(shown[command], language="bash", wrap_lines=True)
        if kind == "pipeline" and config.get("out_dir"):
            st.caption("`--out` is the folder the original run wrote its shards to, and the command refuses a folder "
                       "that already holds shards: give a new folder there, or leave `--out` out to write them into "
                       "the new run's own folder.")
        st.markdown("The same from Python, through `llmfs` (it waits for the run and prints its result):")
        st.code(shown[snippet], language="python")
        st.download_button("Download these settings (.toml)", data=shown[settings], file_name=file_name,
                           mime="application/toml", icon=":material/download:", on_click="ignore",
                           key=f"reproduce.settings:{run.run_id}")
        example = "--steps 500" if kind == "train" else "--limit 100"
        st.caption(f"`python -m llmfs {reproduce.COMMANDS[kind]} --config {file_name}` reads it; any flag given with "
                   f"it overrides the file's value (for example `{example}`).")
        if any(shown[text] != text for text in shown):
            st.caption("Paths on this server are shown by their names: point them at your own copies of those "
                       "files.")
    tracking_note(run)


def tracking_note(run: Run) -> None:
    """Where else this run's figures are: its TensorBoard event files (to whoever may see server paths) and the
    MLflow run it was sent to, when the server sends runs to MLflow."""
    status = run.status()
    lines = []
    if (run.path / "tensorboard").is_dir() and identity.shows_paths():
        lines.append(f"TensorBoard charts of this run: `tensorboard --logdir {run.path / 'tensorboard'}` (or the "
                     f"folder above it, `{run.path.parent}`, for every run).")
    mlflow = status.get("mlflow") or {}
    if mlflow.get("run_id"):
        where = identity.shown(str(mlflow.get("uri") or ""))
        lines.append(f"Sent to MLflow: run `{mlflow['run_id']}` in experiment `{mlflow.get('experiment') or '?'}`"
                     f" at `{where}`.")
    if lines:
        st.caption("  \n".join(lines))
