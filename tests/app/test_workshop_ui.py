"""Workshop mode in the app (AppTest, no training: the queue is paused so submitted runs only wait): participant
names, own runs first, the shared queue box, limits refused in place, out-of-memory retries, the instructor view."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import pytest
from apphelpers import REPO, texts
from streamlit.testing.v1 import AppTest

from app import identity, instructor_view, panels, state
from llmfs.config import TrainConfig
from llmfs.runs import Run

PASSWORD = "s3cret-for-tests"
OOM_ERROR = ("The job ran out of memory. Try a smaller batch size or sequence length, bf16 precision, LoRA instead of "
             "full fine-tuning, or 4-bit base weights. (CUDA out of memory. Tried to allocate 2.00 GiB)")


pytestmark = pytest.mark.usefixtures("router_on_every_run")  # see tests/app/conftest.py


def workshop_limits(home: Path, text: str = "max_queued_per_user = 5\n") -> Path:
    """A limits file in LLMFS_HOME: the lab is now a workshop (written before the job manager is first made)."""
    path = home / "workshop.toml"
    path.write_text(text)
    return path


def open_as(name: str | None, page: str | None = None) -> AppTest:
    """The app in a fresh session; `name` as if this browser had given it before (None: a first visit)."""
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    if name:
        at.session_state[identity.NAME_KEY] = name
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@contextlib.contextmanager
def paused_queue():
    """Submitted runs wait (nothing trains); afterwards what still waits is cancelled and the queue resumed."""
    jobs = state.manager()
    jobs.pause()
    try:
        yield jobs
    finally:
        for run_id in jobs.pending():
            jobs.cancel(run_id)
        jobs.unpause()


def queued(jobs, user: str, owner: str = "l12") -> str:
    return jobs.submit("train", TrainConfig(steps=5), owner=owner, user=user)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def seed_oom(seed, **cfg) -> str:
    run_id = seed(state="failed", done=3, **cfg)
    run = Run(state.manager().root / run_id)
    run.update_status(error=OOM_ERROR, error_type="OutOfMemoryError")
    return run_id


# -- names --------------------------------------------------------------------------------------------------------
def test_sanitize_keeps_a_plain_name():
    assert identity.sanitize("  Ada;  <b>Lovelace</b>\n") == "Ada bLovelaceb"
    assert identity.sanitize("Zoë O'Neil-Ng") == "Zoë O'Neil-Ng"
    assert identity.sanitize("x" * 99) == "x" * 40
    assert identity.sanitize("<>;") == ""


def test_single_user_lab_asks_no_name(llmfs_home):
    at = open_as(None)
    assert "identity.prompt.name" not in [t.key for t in at.text_input]
    assert at.sidebar.get("popover")[0].proto.popover.label == identity.LOCAL_NAME


def test_name_prompt_on_first_visit_and_the_name_is_on_the_run(llmfs_home):
    workshop_limits(llmfs_home)
    with paused_queue():
        at = open_as(None)
        at.text_input(key="identity.prompt.name").input("  Ada;  L. ")
        button(at, "Continue").click().run()
        assert not at.exception
        assert "identity.prompt.name" not in [t.key for t in at.text_input]  # asked once
        assert at.session_state[identity.NAME_KEY] == "Ada L."
        assert at.sidebar.get("popover")[0].proto.popover.label == "Ada L."
        button(at, "Start the quick start run").click().run()
        assert not at.exception and not at.error, texts(at.error)
        (run_id,) = state.manager().pending()
        status = Run(llmfs_home / "runs" / run_id).status()
        assert status["user"] == "Ada L." and status["owner"] == "home"
        assert json.loads((llmfs_home / "runs" / run_id / "config.json").read_text())["user"] == "Ada L."


def test_empty_name_is_refused(llmfs_home):
    workshop_limits(llmfs_home)
    at = open_as(None)
    at.text_input(key="identity.prompt.name").input(" ;; ")
    button(at, "Continue").click().run()
    assert "Type a name" in texts(at.error)
    assert identity.NAME_KEY not in at.session_state


# -- own runs first, the queue box ---------------------------------------------------------------------------------
def test_runs_page_lists_own_runs_first(llmfs_home, seed):
    workshop_limits(llmfs_home)
    mine, bobs, carols = seed(owner="l12"), seed(owner="home"), seed(owner="l15")  # Carol's is the newest
    for run_id, user in [(mine, "Ada"), (bobs, "Bob"), (carols, "Carol")]:
        Run(llmfs_home / "runs" / run_id).update_status(user=user)
    at = open_as("Ada", "pages/runs.py")
    table = at.dataframe[0].value
    assert list(table["run"]) == [mine, carols, bobs]
    assert list(table["user"]) == ["Ada (you)", "Carol", "Bob"]
    select = at.multiselect(key="runs.selected")
    assert select.value == [mine]  # your newest run opens, not someone else's
    assert f"{bobs} · Home quick start · Bob" in select.options
    assert "Your runs first" in texts(at.caption)
    select.set_value([bobs]).run()  # anyone's run can be opened; only its owner may delete it
    assert not at.exception
    assert next(b for b in at.button if b.label.startswith("Delete")).disabled


def test_a_lesson_page_never_shows_someone_elses_run(llmfs_home, seed):
    """After a refresh a lesson page shows your newest run from it: Bob's must not fill Ada's panel, nor turn her
    start button off while it waits."""
    workshop_limits(llmfs_home)
    bobs = seed(owner="l12", state="running", done=3)
    Run(llmfs_home / "runs" / bobs).update_status(user="Bob")
    at = open_as("Ada", "pages/l12_pretrained.py")
    assert "No run yet" in texts(at.info)
    assert not at.button(key="l12.start").disabled
    assert bobs in texts(open_as("Bob", "pages/l12_pretrained.py").caption)


def test_queue_box_shows_a_waiting_runs_position(llmfs_home):
    workshop_limits(llmfs_home)
    with paused_queue() as jobs:
        queued(jobs, "Bob")
        mine = queued(jobs, "Ada")
        at = open_as("Ada")
        sidebar = texts(at.sidebar.markdown) + texts(at.sidebar.caption)
        assert "You are #2" in sidebar and "Paused by the instructor" in sidebar
        assert "#1 **Bob** · train" in sidebar and "#2 **you** · train" in sidebar
        at = open_as("Ada", "pages/runs.py")  # the run's own panel: waiting behind one run
        assert at.multiselect(key="runs.selected").value == [mine]
        assert "Waiting · 1 run ahead" in texts(at.markdown)  # the run's badge


def test_queue_box_estimates_the_wait(llmfs_home, monkeypatch):
    rows = [{"run_id": "r1", "kind": "train", "user": "Bob", "owner": "l12", "state": "running", "position": None,
             "wait_s": 0.0, "remaining_s": 90.0},
            {"run_id": "r2", "kind": "eval", "user": "Cy", "owner": "l14", "state": "pending", "position": 1,
             "wait_s": 90.0, "remaining_s": 60.0},
            {"run_id": "r3", "kind": "train", "user": "me", "owner": "l12", "state": "pending", "position": 2,
             "wait_s": 150.0, "remaining_s": 60.0}]
    monkeypatch.setattr(panels, "queue_rows", lambda: rows)
    at = open_as(None)
    assert "You are #2 · about 2 min" in texts(at.sidebar.markdown)
    assert "**Bob** · train · about 2 min left" in texts(at.sidebar.caption)


def test_limit_refusal_is_shown_in_place(llmfs_home):
    workshop_limits(llmfs_home, "max_queued_per_user = 1\n")
    with paused_queue() as jobs:
        queued(jobs, "Ada")
        at = open_as("Ada")
        button(at, "Start the quick start run").click().run()
        assert not at.exception
        message = texts(at.error)
        assert "Not queued: a limit of this workshop" in message and "You already have 1 job(s)" in message
        assert len(jobs.pending()) == 1
        queued(jobs, "Bob")  # the limit is per person
        assert len(jobs.pending()) == 2


# -- out of memory --------------------------------------------------------------------------------------------------
def test_out_of_memory_offers_retries_and_half_the_batch_resubmits(llmfs_home, seed):
    failed = seed_oom(seed, batch_size=8, grad_accum=1)
    with paused_queue() as jobs:
        at = open_as(None, "pages/runs.py")
        assert at.multiselect(key="runs.selected").value == [failed]
        assert "ran out of memory" in texts(at.error)
        assert "Peak memory before it failed" in texts(at.markdown)
        labels = {b.label: b for b in at.button}
        for label in ("Half the batch", "bf16 precision", "LoRA (rank 8)", "4-bit base (QLoRA)"):
            assert label in labels, label
        assert "activations" in labels["Half the batch"].help
        assert not labels["4-bit base (QLoRA)"].disabled and "CPU" in labels["4-bit base (QLoRA)"].help  # runs here
        labels["Half the batch"].click().run()
        assert not at.exception
        (new,) = jobs.pending()
        cfg = Run(llmfs_home / "runs" / new).config()
        assert cfg["batch_size"] == 4 and cfg["grad_accum"] == 2 and cfg["steps"] == 20
        status = Run(llmfs_home / "runs" / new).status()
        assert status["user"] == identity.LOCAL_NAME and status["owner"] == "l12"
        assert at.multiselect(key="runs.selected").value == [new]  # the retry opens


def test_retry_goes_through_the_limits(llmfs_home, seed):
    workshop_limits(llmfs_home, "max_tokens_per_step = 1024\n")
    failed = seed_oom(seed, batch_size=8, seq_len=128)  # 1,024 tokens a step: allowed
    at = open_as("Ada", "pages/runs.py")
    assert at.multiselect(key="runs.selected").value == [failed]
    with paused_queue() as jobs:
        button(at, "LoRA (rank 8)").click().run()
        assert not at.exception and not at.error, texts(at.error)
        (new,) = jobs.pending()
        cfg = Run(llmfs_home / "runs" / new).config()
        assert cfg["lora_rank"] == 8 and cfg["batch_size"] == 8
        assert Run(llmfs_home / "runs" / new).status()["user"] == "Ada"


# -- the instructor view ------------------------------------------------------------------------------------------
def test_instructor_without_password_says_how_to_set_one(llmfs_home, monkeypatch):
    monkeypatch.delenv("LLMFS_INSTRUCTOR_PASSWORD", raising=False)
    at = open_as(None, "pages/instructor.py")
    message = texts(at.info)
    assert "No instructor password" in message and "LLMFS_INSTRUCTOR_PASSWORD" in message
    assert "secrets.toml" in message
    assert "instructor.password" not in [t.key for t in at.text_input]


@pytest.fixture
def instructor(llmfs_home, monkeypatch):
    monkeypatch.setenv("LLMFS_INSTRUCTOR_PASSWORD", PASSWORD)
    monkeypatch.setattr(instructor_view, "WRONG_PASSWORD_DELAY_S", 0.0)
    return llmfs_home


def unlock(at: AppTest, password: str = PASSWORD) -> AppTest:
    at.text_input(key="instructor.password").input(password)
    return button(at, "Unlock").click().run()


def test_instructor_wrong_password_is_refused(instructor):
    at = unlock(open_as(None, "pages/instructor.py"), "guess")
    assert "Wrong password" in texts(at.error)
    assert not any(b.label == "Pause the queue" for b in at.button)


def test_instructor_view_cancels_pauses_and_frees_memory(instructor, seed):
    seed(owner="l12")  # a finished run, in the table
    at = unlock(open_as(None, "pages/instructor.py"))
    assert not at.exception and "Wrong password" not in texts(at.error)
    jobs = state.manager()

    button(at, "Pause the queue").click().run()
    assert jobs.paused
    waiting = queued(jobs, "Bob")
    at.run()
    table = at.dataframe[0].value
    assert list(table.columns[:5]) == ["user", "kind", "state", "progress", "started from"]
    assert table.set_index("run").loc[waiting, "user"] == "Bob"
    assert table.set_index("run").loc[waiting, "state"] == "pending"
    assert f"`{waiting}`" in texts(at.markdown)
    at.button(key=f"instructor.cancel:{waiting}").click().run()
    assert not at.exception
    assert Run(instructor / "runs" / waiting).state == "cancelled"
    assert "Nothing is waiting or running" in texts(at.caption)

    button(at, "Resume the queue").click().run()
    assert not jobs.paused

    limits = at.dataframe[1].value.set_index("setting")
    assert limits.loc["max_queued_per_user", "value"] == "no limit"

    at.button(key="instructor.free").click().run()  # "Free GPU memory" where there is one
    assert not at.exception
    assert "no GPU" in texts(at.info)
    labels = [m.label for m in at.metric]
    assert "Before · App process memory (RSS)" in labels and "After · App process memory (RSS)" in labels

    button(at, "Lock this view").click().run()
    assert at.text_input(key="instructor.password")


def test_instructor_applies_a_changed_limits_file(instructor):
    at = unlock(open_as(None, "pages/instructor.py"))
    assert state.manager().workshop_limits.max_steps is None
    assert state.manager().policy is not None  # a password makes a workshop: who reads what is checked already
    workshop_limits(instructor, "max_steps = 50\n")
    at.run()
    assert "in force" in texts(at.warning)
    button(at, "Apply the limits file now").click().run()
    assert state.manager().workshop_limits.max_steps == 50
    assert "Applied" in texts(at.success)


def test_out_of_memory_is_recognised_by_type_or_kind_never_by_wording():
    assert not panels.out_of_memory({"error": OOM_ERROR})   # a sentence alone: its words can change, a kind cannot
    assert panels.out_of_memory({"error": "CUDA error", "error_type": "OutOfMemoryError"})
    assert panels.out_of_memory({"error": "x", "error_kind": "out_of_memory"})
    assert not panels.out_of_memory({"error": "The loss became nan at step 7: training diverged."})


def test_upload_widgets_show_and_enforce_the_workshop_limit(llmfs_home):
    workshop_limits(llmfs_home, "max_upload_mb = 5\n")
    at = open_as("Ada", "pages/l13_data.py")
    # data uploaders (the settings-file uploader takes a few lines, at most 1 MB, whatever the limit)
    uploaders = [u for u in at.get("file_uploader") if not u.key.endswith(".settings_file")]
    assert uploaders and all(u.proto.max_upload_size_mb == 5 for u in uploaders)  # the browser refuses bigger
    assert all("up to 5 MB" in u.proto.label for u in uploaders)
    # a participant's upload lands in their own folder: two people's notes.jsonl never overwrite each other
    at.file_uploader(key="l13.uploads").set_value([("notes.jsonl", b'{"text": "Ada\'s"}\n', "application/json")])
    at.run()
    assert not at.exception and not at.error
    from llmfs.uploads import person_folder
    assert (llmfs_home / "uploads" / person_folder("Ada") / "notes.jsonl").read_bytes() == b'{"text": "Ada\'s"}\n'


# -- what a participant may read (issue #14) --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/etc/hostname", "/proc/self/environ", "~/notes.txt", "pipe:touch x; cat a{,}.tar"])
def test_a_path_outside_ones_own_is_refused_in_place(llmfs_home, path):
    """L15's training data typed as a path on this machine: refused under the Start button, nothing queued."""
    workshop_limits(llmfs_home)
    with paused_queue() as jobs:
        at = open_as("Ada", "pages/l15_lora.py")
        at.selectbox(key="l15.data.kind").set_value("path").run()
        at.text_input(key="l15.data.path").input(path).run()
        assert not at.exception
        assert next(b for b in at.button if b.key == "l15.start").disabled   # refused where it was typed
        message = apphelpers.unescaped(texts(at.error))
        assert "not yours to read in this workshop" in message or "'pipe:' sources are refused" in message, message
        assert str(llmfs_home) not in message
        assert jobs.pending() == [] and jobs.list_runs() == []


def test_a_participants_own_upload_is_accepted(llmfs_home):
    from llmfs.uploads import uploads_dir
    workshop_limits(llmfs_home)
    mine = uploads_dir("Ada")
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("Some text of Ada's own. " * 50)
    with paused_queue() as jobs:
        at = open_as("Ada", "pages/l15_lora.py")
        at.selectbox(key="l15.data.kind").set_value("path").run()
        at.text_input(key="l15.data.path").input(str(mine / "notes.txt")).run()
        next(b for b in at.button if b.key == "l15.start").click().run()
        assert not at.exception and not at.error, texts(at.error)
        assert len(jobs.pending()) == 1
