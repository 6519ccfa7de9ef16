"""Uploads as every page takes them: the size limit the widgets show and enforce, and a Streamlit upload checked and
saved (`llmfs.uploads` does the checking; in a workshop each participant's files go in their own folder)."""

from __future__ import annotations

from pathlib import Path

from llmfs import uploads

from . import identity

UPLOAD_SUFFIXES = uploads.TEXT_SUFFIXES    # .txt, .jsonl, .parquet


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


def save_upload(upload, kind: str = "text", task: str = "custom") -> Path:
    """Check a Streamlit upload and save it under `$LLMFS_HOME/uploads/` (in a workshop, in the participant's folder)
    (`llmfs.uploads.save_upload`: name, size, type and content checked, written atomically); returns the path.
    `kind="benchmark"` with the L14 `task`.

    Raises:
        llmfs.uploads.UploadError (a ValueError): the upload was refused; the message lists why (with line numbers
            for malformed content) and nothing was written.
    """
    uploads.safe_name(upload.name, uploads.suffixes_for(kind, task))
    uploads.check_size(upload.name, upload.size)   # before the bytes are read
    return uploads.save_upload(upload.name, upload.getbuffer(), kind=kind, task=task,
                               person=identity.workshop_user())
