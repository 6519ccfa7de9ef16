"""Uploads as every page takes them: the size limit the widgets show and enforce, and a Streamlit upload checked and
saved (`llmfs.uploads` does the checking; in a workshop each participant's files go in their own folder)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from llmfs import uploads

from . import identity
from .text import md_escape

UPLOAD_SUFFIXES = uploads.TEXT_SUFFIXES    # .txt, .jsonl, .parquet
EXAMPLE_SUFFIXES = uploads.EXAMPLE_SUFFIXES  # .jsonl, .json, .csv: questions and answers to learn from
TRAINING_SUFFIXES = uploads.TRAINING_SUFFIXES  # either


def upload_limit_mb() -> float:
    """The size limit of one upload in MB, as the upload widgets show and enforce it: the workshop's `max_upload_mb`
    (200 MB without a limits file). A broken limits file closes uploads (save_upload says why); the widgets then
    show the default."""
    try:
        return uploads.upload_limit_bytes() / 1_000_000
    except uploads.UploadError:
        return 200.0


def fmt_mb(mb: float) -> str:
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:g} MB"


def safe_upload_name(name: str) -> str:
    """The file name a training-text upload is saved under (`llmfs.uploads.safe_name`: letters, digits, `.`, `_`
    and `-`, no leading dots, no folders, .txt / .jsonl / .parquet only).

    Raises:
        llmfs.uploads.UploadError (a ValueError): with a message for the user.
    """
    return uploads.safe_name(name, UPLOAD_SUFFIXES)


def saved_upload(upload, key: str, kind: str = "text") -> Path | None:
    """A training-text upload checked and saved once (not on every rerun), as the page shows it: None, with the
    refusal under the upload, while it is refused. A JSON Lines file with some unreadable lines is offered without
    them ("Skip these 2 lines and use the other 3"); once saved so, a caption says which lines were left out.

    kind: "text", "examples" (a file of questions and answers; a refusal names the line to fix) or "training"
        (whichever of the two the file holds: `llmfs.uploads.training_kind`)."""
    saved: dict = st.session_state.setdefault(f"{key}.saved", {})
    skipped: dict = st.session_state.setdefault(f"{key}.skipped", {})
    path = saved.get(upload.file_id)
    if path is None or not Path(path).exists():  # check and save once, not on every rerun of the form
        try:
            path = saved[upload.file_id] = save_upload(upload, kind)
        except uploads.BadLinesError as e:
            skip_key = f"{key}.skip.{upload.file_id}"
            if not st.session_state.get(skip_key):  # the offer, until it is taken
                st.error(md_escape(e), icon=":material/error:")
                n = len(e.bad_lines)
                what = "line" if n == 1 else f"these {n:,} lines:"
                st.checkbox(f"Skip {what} {line_list(e.bad_lines)}, and use the other {e.readable:,}",
                            key=skip_key, persist_state="session")
                return None
            try:
                path = saved[upload.file_id] = save_upload(upload, kind, skip_bad_lines=True)
            except ValueError as e2:
                st.error(md_escape(e2), icon=":material/error:")
                return None
            skipped[upload.file_id] = e.bad_lines
        except ValueError as e:
            st.error(md_escape(e), icon=":material/error:")
            return None
    if upload.file_id in skipped:
        lines = skipped[upload.file_id]
        what = "line" if len(lines) == 1 else f"{len(lines):,} unreadable lines:"
        st.caption(f"Saved without its unreadable {what} {line_list(lines)}." if len(lines) == 1 else
                   f"Saved without its {what} {line_list(lines)}.")
    return Path(path)


def line_list(lines: list[int], most: int = 8) -> str:
    """Line numbers in words: "3", "3 and 5", "3, 5, 9 and 4 more"."""
    if len(lines) == 1:
        return str(lines[0])
    if len(lines) <= most:
        return f"{', '.join(map(str, lines[:-1]))} and {lines[-1]}"
    return f"{', '.join(map(str, lines[:most]))} and {len(lines) - most:,} more"


def save_upload(upload, kind: str = "text", task: str = "custom", skip_bad_lines: bool = False) -> Path:
    """Check a Streamlit upload and save it under `$LLMFS_HOME/uploads/` (in a workshop, in the participant's folder)
    (`llmfs.uploads.save_upload`: name, size, type and content checked, written atomically); returns the path.
    `kind="benchmark"` with the L14 `task`; `kind="examples"` for questions and answers (`kind="training"`: text or
    examples, whichever the file holds).

    `skip_bad_lines`: training text in JSON Lines is saved without its unreadable lines.

    Raises:
        llmfs.uploads.UploadError (a ValueError): the upload was refused; the message lists why (with line numbers
            for malformed content) and nothing was written (`llmfs.uploads.BadLinesError`: some lines are readable).
    """
    uploads.safe_name(upload.name, uploads.suffixes_for(kind, task))
    uploads.check_size(upload.name, upload.size)   # before the bytes are read
    return uploads.save_upload(upload.name, upload.getbuffer(), kind=kind, task=task,
                               person=identity.workshop_user(), skip_bad_lines=skip_bad_lines)
