"""Who is at this browser: the participant's name, which every run they start carries (`user` in its folder).

Workshop mode (a limits file exists, or an instructor password is set: many people share this server) asks for a
name once, in a dialog on the first visit, and remembers it in the browser (a cookie `llmfs_user`, 30 days), so a
refresh, a second tab or tomorrow's session find the same runs and the same place in the queue. A single person's
lab (no limits, no password) asks nothing: every run is theirs, under the name "me" (the same in every tab and after
a restart, so "your runs" never splits in two; the OS account name would say nothing useful, often "root" in a
container, and would leak into a shared queue the day the lab becomes a workshop).

A name is not a login: anyone may type anyone's name. It only keeps people's runs apart; what the instructor
controls stays behind the instructor password.

What a session may see of a run (workshop mode only; a single person's lab shows everything): everyone sees every
run's figures (curves, scores, settings: a class learns together), but a run's texts (data samples, generations,
wrong answers, logs) and downloads belong to the person who started it and to the instructor, unless the limits
file says `share_runs = "all"`. Server paths are shown to the instructor only; participants see names.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from urllib.parse import unquote

import streamlit as st

from llmfs import access, workshop
from llmfs.config import ConfigError

COOKIE = "llmfs_user"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
MAX_LEN = 40
LOCAL_NAME = "me"          # the one user of a lab without workshop settings
NAME_KEY = "identity.name"
_ALLOWED_PUNCTUATION = " .-_'"
UNLOCKED = "instructor.unlocked"  # session state: the token of the password that unlocked the instructor view
WITHHELD = "Texts from this run (samples, log) are visible to the person who started it and to the instructor."


def sanitize(raw: object) -> str:
    """A name safe to show, store in a folder's JSON and put in a cookie: letters (any script), digits, spaces and
    . - _ ' only, spaces collapsed, at most 40 characters. "" when nothing is left."""
    text = unicodedata.normalize("NFKC", str(raw or ""))
    text = "".join(ch for ch in text if ch.isalnum() or ch in _ALLOWED_PUNCTUATION)
    return " ".join(text.split())[:MAX_LEN].strip()


def workshop_mode() -> bool:
    """Several people share this server: the instructor wrote a limits file or set a password."""
    return workshop.workshop_mode(_secrets())


def current_user() -> str | None:
    """This session's name: chosen here, else remembered by the browser (cookie), else "me" in a single user's lab.
    None in workshop mode until the participant has given one."""
    name = st.session_state.get(NAME_KEY)
    if name:
        return name
    name = _cookie_name()
    if name:
        st.session_state[NAME_KEY] = name
        return name
    return None if workshop_mode() else LOCAL_NAME


def user_for_submission() -> str:
    """The name a new run is recorded under.

    Raises:
        ValueError: in workshop mode before the participant has given a name (the dialog asks for it; the refusal
            is shown where the start button was pressed).
    """
    name = current_user()
    if not name:
        raise ValueError("Give your name first (reload the page to be asked again): the shared queue and the "
                         "workshop's per-person limits need it.")
    return name


def set_name(name: str) -> None:
    st.session_state[NAME_KEY] = name


def is_mine(user: str | None, me: str | None = None) -> bool:
    """Is a run recorded under `user` this session's? In a single user's lab, runs without a name (started from
    the command line, or before names existed) are theirs too."""
    me = me if me is not None else current_user()
    if user:
        return user == me
    return me == LOCAL_NAME


def workshop_user() -> str | None:
    """Whose folders this session's uploads and saved models go in: the participant's name in workshop mode (so two
    people's "notes.jsonl" or "my-model" never meet), None in a single person's lab."""
    return current_user() if workshop_mode() else None


# -- what this session may see --------------------------------------------------------------------------------
def instructor_token(password: str) -> str:
    """What an unlocked session keeps: a hash of the password, never the password itself; a changed password no
    longer matches, so every session unlocked with the old one is locked again."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def is_instructor() -> bool:
    """This session unlocked the instructor view (with the password in force now)."""
    expected = workshop.instructor_password(_secrets())
    return expected is not None and st.session_state.get(UNLOCKED) == instructor_token(expected)


def may_see_texts(run_user: str | None) -> bool:
    """May this session read the texts and take the downloads of a run (or adapter) recorded under `run_user`?
    Always in a single person's lab; in a workshop, the owner, the instructor, or everyone with share_runs = "all".
    A run without a name (the command line's) is nobody's in a workshop: a participant who calls themself "me"
    must not get it."""
    if not workshop_mode() or (run_user and is_mine(run_user)):
        return True
    return is_instructor() or _share_runs() == "all"


def shows_paths() -> bool:
    """Server paths are shown as they are in a single person's lab and to the instructor; participants see names."""
    return not workshop_mode() or is_instructor()


def shown(text: str) -> str:
    """`text` (an error, a log, a setting) as this session may see it: server paths replaced by names for a
    participant (`llmfs.access.hide_paths`)."""
    return text if shows_paths() else access.hide_paths(text)


def _share_runs() -> str:
    """The limits file's share_runs, read again only when the file changes: every live panel asks on every poll."""
    path = workshop.limits_path()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:  # no limits file: a password alone makes the workshop, sharing figures only
        return "figures"
    return _share_runs_of(str(path), stamp)


@st.cache_data(max_entries=4, show_spinner=False)
def _share_runs_of(path: str, stamp: int) -> str:
    try:
        return workshop.load_limits(path).share_runs
    except ConfigError:  # a broken limits file shares nothing more (the instructor view says what is wrong)
        return "figures"


# -- the first-visit prompt -------------------------------------------------------------------------------------
def name_prompt() -> None:
    """In workshop mode, until this session has a name: a dialog asking for it. It cannot be dismissed: the queue
    and the per-person limits need a name (and the start buttons refuse without one)."""
    if current_user() is None:
        _ask_name()


@st.dialog("Your name for this workshop", dismissible=False)
def _ask_name() -> None:
    st.markdown("Your runs and your place in the shared queue are shown under this name, and this browser "
                "remembers it. Any name works (1 to 40 characters); add an initial if yours is common.")
    with st.form("identity.prompt", border=False):
        raw = st.text_input("Your name", max_chars=MAX_LEN, key="identity.prompt.name",
                            persist_state="session", placeholder="e.g. Ada L.")
        submitted = st.form_submit_button("Continue", type="primary", icon=":material/arrow_forward:")
    if submitted:
        name = sanitize(raw)
        if not name:
            st.error("Type a name (letters or digits), 1 to 40 characters.", icon=":material/error:")
            return
        set_name(name)
        st.rerun()


# -- the sidebar control ----------------------------------------------------------------------------------------
def name_control() -> None:
    """The sidebar's "you are ..." with a way to change the name (and, once a name was chosen in this session,
    the snippet that stores it in the browser's cookie)."""
    name = current_user()
    if name is None:
        return
    with st.popover(name, icon=":material/person:", help="Your name on your runs and in the queue: change it",
                    width="stretch"):
        st.text_input("Change your name", value="", max_chars=MAX_LEN, key="identity.change", persist_state="session",
                      placeholder=name, on_change=_apply_change)
        st.caption("Press Enter to save. Runs you already started keep the name they were started under.")
    if error := st.session_state.pop("identity.change_error", None):
        st.error(error, icon=":material/error:")
    if name != _cookie_name() and st.session_state.get(NAME_KEY) == name:
        _store_in_browser(name)


def _apply_change() -> None:
    name = sanitize(st.session_state.get("identity.change"))
    st.session_state["identity.change"] = ""
    if not name:
        st.session_state["identity.change_error"] = "Type a name (letters or digits), 1 to 40 characters."
        return
    set_name(name)


def _store_in_browser(name: str) -> None:
    """Write the cookie from the page (Streamlit reads cookies, it does not set them): a script in a one-pixel
    same-origin frame sets it on the app's document. Drawn on every run until a later visit brings the cookie
    back, so a rerun that comes before the frame has loaded cannot lose it."""
    script = f"""<script>
const secure = window.parent.location.protocol === "https:" ? "; Secure" : "";
window.parent.document.cookie = "{COOKIE}=" + encodeURIComponent({json.dumps(name)}) +
    "; path=/; max-age={COOKIE_MAX_AGE_S}; SameSite=Strict" + secure;
</script>"""
    st.iframe(script, height=1, tab_index=-1)


def _cookie_name() -> str:
    try:
        raw = st.context.cookies.get(COOKIE)
    except Exception:  # no browser behind this session (a bare script run)
        return ""
    return sanitize(unquote(raw)) if isinstance(raw, str) else ""  # (AppTest's sessions answer with a mock)


def _secrets():
    try:
        return st.secrets
    except Exception:
        return None
