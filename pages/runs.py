"""Runs: every run on this machine. Open one (live panel, stop, resume), compare several, delete old ones; download
one as a .zip (a run bundle) and import one made on another machine."""

import functools
import math

import streamlit as st

from app import identity, panels, run_panels, state, tables
from app.text import md_escape
from app.uploads import fmt_mb, upload_limit_mb
from llmfs import bundles
from llmfs.runs import FINAL_STATES, KIND_WORDS, NAME_MAX

SELECTED = "runs.selected"
CONFIRM = "runs.confirm_delete"
DONE = "runs.done"  # what the last delete or rename did (Markdown, data escaped), said once above the runs
IMPORTED = "runs.imported"  # upload's file id -> ("success" | "error", message): each upload is imported once

st.title("Runs")
st.markdown("Every run started here, from a lesson page or from the command line (`python -m llmfs train`), and every "
            "run imported from a .zip. Runs live in folders on disk, so they survive a closed tab or a restarted app.")


def import_run(data: bytes, file_name: str) -> str:
    """Check and add the run bundle uploaded as `file_name`; returns the new run's id. In a workshop the run is
    the importer's own.

    Raises:
        ValueError (llmfs.bundles.BundleError): the bundle is refused, nothing saved; or no name given yet.
    """
    user = identity.user_for_submission() if identity.workshop_mode() else None
    return bundles.import_bundle(data, state.jobs().root, user=user, shown_name=file_name).name


def import_section() -> None:
    """An uploader for a run bundle: imported once per upload, then opened (said above the runs); a refusal is
    said here, under the uploader."""
    limit = upload_limit_mb()
    st.subheader("Import a run")
    file = st.file_uploader(f"A run downloaded from llmfs-lab (.zip, up to {fmt_mb(limit)})", type=["zip"],
                            key="runs.import", max_upload_size=max(1, math.ceil(limit)),
                            help="The .zip that “Download this run” (or `python -m llmfs runs export`) made, here or "
                                 "on another machine. It is checked (size, names, checksums) before anything is "
                                 "saved, and listed here marked imported.")
    if file is None:
        return
    done: dict = st.session_state.setdefault(IMPORTED, {})
    if file.file_id not in done:   # import once, not on every rerun while the file sits in the uploader
        try:
            run_id = import_run(file.getvalue(), file.name)
        except ValueError as e:
            done[file.file_id] = ("error", str(e))
        else:
            run = state.jobs().get(run_id)
            status = run.status()
            origin = (status.get("imported") or {}).get("original_run_id") or run_id
            what = KIND_WORDS.get(run.kind, run.kind)
            done[file.file_id] = ("success", run_id)
            named = f"“{md_escape(run.name)}” " if run.name else ""
            renamed = "" if run_id == origin else f", as {md_escape(run_id)} (its id was taken here)"
            st.session_state[DONE] = [f"Imported **{md_escape(file.name)}**: the {what} run {named}"
                                      f"{md_escape(origin)} ({status.get('state')}){renamed}. It is open below, "
                                      "marked imported."]
            st.session_state[panels.OPENED] = run_id
            st.rerun()
    kind, text = done[file.file_id]
    if kind == "error":
        st.error(f"**{md_escape(file.name)}** was not imported: {md_escape(identity.shown(text))}",
                 icon=":material/error:")


jobs = state.jobs()
me = identity.current_user()
runs = jobs.list_runs()
statuses = {r.run_id: r.status() for r in runs}
users = {rid: status.get("user") for rid, status in statuses.items()}
imported = {rid for rid, status in statuses.items() if bundles.is_imported(status)}
mine = [r for r in runs if identity.is_mine(users[r.run_id], me)]
runs = mine + [r for r in runs if not identity.is_mine(users[r.run_id], me)]  # yours first, newest first in each
if not runs:
    st.info("No runs yet. Start one with the quick start on Home or from any lesson page; it will be listed here.",
            icon=":material/history:")
    st.page_link("pages/home.py", label="Go to Home", icon=":material/home:")
    import_section()
    st.stop()

if mine and len(mine) < len(runs):
    st.caption(f"**Your runs first** ({len(mine)}), then everyone else's on this server ({len(runs) - len(mine)}), "
               "each newest first. Anyone's runs can be opened and compared"
               + ("; only your own can be stopped or deleted." if identity.workshop_mode() else "."))
for message in st.session_state.pop(DONE, []):
    st.success(message, icon=":material/check_circle:")
panels.runs_overview(runs)

ids = [r.run_id for r in runs]
if st.session_state.get(panels.OPENED) in ids:  # a retry of a failed run was just queued: open it
    st.session_state[SELECTED] = [st.session_state.pop(panels.OPENED)]
if SELECTED not in st.session_state:  # first visit: the run named in the link (?run=<id>), else the newest
    st.session_state[SELECTED] = [st.query_params["run"]] if st.query_params.get("run") in ids else ids[:1]
st.session_state[SELECTED] = [r for r in st.session_state[SELECTED] if r in ids]
owners = {r.run_id: state.owner_label(statuses[r.run_id].get("owner"))
          + (" · imported" if r.run_id in imported else "")
          + ("" if identity.is_mine(users[r.run_id], me) or not users[r.run_id] else f" · {users[r.run_id]}")
          for r in runs}
names = {r.run_id: r.name for r in runs}
# The labels must not change while a run goes on (no status in them): the browser keeps a selection by its label.
selected = st.multiselect("Runs to open (one) or compare (several)", ids, key=SELECTED, persist_state="session",
                          format_func=lambda rid: (f"{names[rid]} · " if names[rid] else "") + f"{rid} · {owners[rid]}",
                          placeholder="Choose one run to see its details, or several to compare them")


def delete(run_ids: list[str]) -> None:
    errors, deleted = [], 0
    for rid in run_ids:
        try:
            jobs.delete(rid)
        except (RuntimeError, KeyError, OSError) as e:
            errors.append(str(e))
        else:
            deleted += 1
    st.session_state[SELECTED] = [r for r in st.session_state.get(SELECTED, []) if r not in run_ids]
    st.session_state[CONFIRM] = None
    st.session_state["runs.delete_errors"] = errors
    if deleted:
        st.session_state[DONE] = [f"Deleted {deleted} run{'s' if deleted > 1 else ''}."]


def rename(run_id: str) -> None:
    name = st.session_state.get(f"runs.name:{run_id}") or ""
    try:
        stored = jobs.get(run_id).rename(name)
    except (ValueError, KeyError, OSError) as e:
        st.session_state["runs.delete_errors"] = [str(e)]
        return
    st.session_state[DONE] = [f"Renamed {run_id} to “{md_escape(stored)}”." if stored else
                              f"{run_id} has no name now."]


def rename_control(run_id: str) -> None:
    """A box holding the run's name, and a button that saves it (your own runs only, in a workshop)."""
    run = jobs.get(run_id)
    if identity.workshop_mode() and not identity.is_mine(users.get(run_id), me):
        return
    with st.form(f"runs.rename:{run_id}", border=False, enter_to_submit=True):
        box, button = st.columns([4, 1], vertical_alignment="bottom")
        box.text_input("Run name", value=run.name, max_chars=NAME_MAX, key=f"runs.name:{run_id}",
                       placeholder="No name: it is called by its settings", help=run_panels.NAME_HELP)
        button.form_submit_button("Rename", icon=":material/edit:", on_click=rename, args=(run_id,))


def download_control(run_id: str) -> None:
    """"Download this run (.zip)" once it has finished, for whoever may take its downloads (in a workshop: its
    owner, the instructor, or everyone when the instructor shares runs)."""
    run = jobs.get(run_id)
    if run.state not in FINAL_STATES:
        st.caption("Once this run has finished, it can be downloaded here as one .zip.")
        return
    if not identity.may_see_texts(users.get(run_id)):
        st.caption("Only the person who started this run, and the instructor, can download it.")
        return
    st.download_button("Download this run (.zip)", data=functools.partial(bundles.export_bytes, run.path),
                       file_name=bundles.bundle_name(run.path), mime="application/zip", icon=":material/download:",
                       key=f"runs.download:{run_id}", on_click="ignore",
                       help="Take it home, or import it on another machine (Import a run, at the bottom of this "
                            "page, or `python -m llmfs runs import`).")
    st.caption(bundles.INCLUDED)


if len(selected) == 1:
    rename_control(selected[0])
    download_control(selected[0])
    run_panels.run_panel(selected[0])
elif len(selected) > 1:
    panels.compare_runs(selected)
    st.subheader("Settings that differ")
    diff = tables.config_diff([jobs.get(r) for r in selected])
    if diff.empty:
        st.caption("These runs used exactly the same settings.")
    else:
        st.dataframe(diff, column_config={"_index": st.column_config.TextColumn("Setting", width="medium")})

if selected:
    foreign = [r for r in selected if not identity.is_mine(users.get(r), me)] if identity.workshop_mode() else []
    st.button(f"Delete {len(selected)} selected run{'s' if len(selected) > 1 else ''}…", icon=":material/delete:",
              on_click=lambda: st.session_state.update({CONFIRM: list(selected)}), disabled=bool(foreign),
              help=f"Only your own runs can be deleted in a workshop ({', '.join(foreign)} "
                   f"{'is' if len(foreign) == 1 else 'are'} someone else's)." if foreign else None)
for error in st.session_state.pop("runs.delete_errors", []):
    st.error(md_escape(identity.shown(error)), icon=":material/error:")
to_delete = st.session_state.get(CONFIRM)
if to_delete:
    folders = "their folders" if len(to_delete) > 1 else "its folder"
    st.warning(f"Delete {', '.join(to_delete)} and everything in {folders} (metrics, checkpoints, saved models)? "
               "This cannot be undone.", icon=":material/warning:")
    yes, no = st.columns([1, 6])
    yes.button("Yes, delete", type="primary", on_click=delete, args=(to_delete,))
    no.button("Keep them", on_click=lambda: st.session_state.update({CONFIRM: None}))

import_section()
