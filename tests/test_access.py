"""Issue #14: nothing a person types is ever executed (every entry point), and in a workshop a participant reads only
what is theirs (`llmfs.access`, applied by `llmfs.workshop`'s policy to every submission)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llmfs import access
from llmfs.access import AccessError, hide_paths, workshop_access
from llmfs.data import readers
from llmfs.data.readers import DataError, read_documents
from llmfs.jobs import JobManager
from llmfs.runs import Run, new_run_id
from llmfs.uploads import uploads_dir
from llmfs.workshop import WorkshopLimits, check_sources, install

REPO = Path(__file__).resolve().parents[1]


# -- rule 1: nothing is executed ----------------------------------------------------------------------------------
def hostile_specs(marker: Path) -> list[str]:
    """The issue's input and its variants; each would run `touch MARKER` through webdataset's gopen."""
    cmd = f"touch {marker}"
    return [f"pipe:{cmd}; cat none{{,}}.tar",           # the brace pattern sends it to gopen
            f"PIPE:{cmd}; cat none{{,}}.tar",           # upper case
            f"pipe:{cmd}; cat shard-{{000..001}}.tar",  # a shard pattern
            f" pipe:{cmd}; cat x.tar",                  # leading space
            f"{{pipe:{cmd}; cat x,other}}.tar",         # the scheme made by the braces
            f"hf:json:pipe:{cmd}; cat x.jsonl",         # inside hf:json:
            f"Pipe:{cmd}; cat a.tar"]


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "a command from a data source was executed"


@pytest.mark.parametrize("index", range(7))
def test_a_pipe_source_is_refused_by_every_reader(index, marker, tmp_path):
    spec = hostile_specs(marker)[index]
    with pytest.raises(DataError, match="refused|cannot read"):
        list(read_documents(spec))
    with pytest.raises(DataError):
        readers.check_spec(spec)
    with pytest.raises(DataError):
        list(readers.DocumentReader(spec))


def test_open_stream_opens_no_command_and_no_other_scheme(marker):
    for location in [f"pipe:touch {marker}", f"PIPE:touch {marker}", "file:///etc/hostname", "ftp://x/y.tar"]:
        with pytest.raises(DataError):
            readers.open_stream(location)


def test_a_pipeline_job_payload_with_pipe_inputs_runs_nothing(marker, tmp_path, home_with_default):
    """A config payload submitted straight to the runner (no page, no preflight): the run fails, saying why."""
    from llmfs.runner import default_manager
    jobs = default_manager(tmp_path / "runs", telemetry_interval=60)
    try:
        run_id = jobs.submit("pipeline", {"inputs": ["llmfs-corpus", hostile_specs(marker)[0]], "weights": None})
        assert jobs.wait(run_id, timeout=120) == "failed"
        assert "'pipe:' sources are refused" in jobs.get(run_id).status()["error"]
        run_id = jobs.submit("train", {"data": hostile_specs(marker)[2], "steps": 1})
        assert jobs.wait(run_id, timeout=120) == "failed"
        assert "refused" in jobs.get(run_id).status()["error"]
    finally:
        jobs.shutdown()


@pytest.mark.parametrize("argv", [
    ["train", "--data", "{spec}", "--steps", "1", "--json"],
    ["data", "--input", "llmfs-corpus", "--input", "{spec}", "--out", "{out}", "--json"],   # in a list of inputs
])
def test_the_cli_refuses_pipe_sources_before_anything_runs(argv, marker, tmp_path, home_with_default):
    spec = hostile_specs(marker)[1]
    env = {**os.environ, "LLMFS_HOME": str(home_with_default)}
    out = subprocess.run([sys.executable, "-m", "llmfs", *[a.replace("{spec}", spec).replace("{out}", str(tmp_path / "out")) for a in argv]], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode in (1, 2), out.stderr[-2000:]
    assert "refused" in out.stdout.splitlines()[-1], out.stdout[-2000:]


def test_http_reads_refuse_private_addresses_in_a_workshop(tmp_path, monkeypatch):
    """With the workshop's flag (set in every job's environment) a loopback address is refused at connection time;
    without it, the same shard reads."""
    import tarfile
    shard = tmp_path / "shard-0.tar"
    with tarfile.open(shard, "w") as tar:
        data = b"hello"
        info = tarfile.TarInfo("a.txt")
        info.size = len(data)
        import io
        tar.addfile(info, io.BytesIO(data))
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/shard-0.tar"
    try:
        assert [d.text for d in read_documents(url)] == ["hello"]
        monkeypatch.setenv(readers.PUBLIC_ONLY_ENV, "1")
        errors = []
        assert list(read_documents(url, on_error=errors.append)) == []
        assert "private-network" in errors[0].reason or "local" in errors[0].reason
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# -- rule 2: a participant reads only what is theirs -------------------------------------------------------------
@pytest.fixture
def lab(llmfs_home, tmp_path):
    """Two participants' uploads, a run each with a model folder, a shared folder and a secret outside."""
    ana, ben = uploads_dir("ana"), uploads_dir("ben")
    for folder, who in ((ana, "ana"), (ben, "ben")):
        folder.mkdir(parents=True)
        (folder / "notes.txt").write_text(f"{who}'s notes")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "password.txt").write_text("hunter2")
    shared = tmp_path / "class"
    shared.mkdir()
    (shared / "web.jsonl").write_text(json.dumps({"text": "shared"}) + "\n")
    runs = {}
    for who in ("ana", "ben"):
        run = Run.create(llmfs_home / "runs" / new_run_id("train"), "train", {}, owner="l12", user=who)
        (run.path / "model").mkdir()
        (run.path / "model" / "config.json").write_text("{}")
        runs[who] = run.path
    return {"home": llmfs_home, "ana": ana, "ben": ben, "secret": secret, "shared": shared, "runs": runs}


def refused(check, *args, match: str = "not yours|switched off|private|address"):
    with pytest.raises(AccessError, match=match):
        check(*args)


def test_a_participant_reads_their_own_files_and_the_built_ins(lab):
    me = workshop_access("ana", shared_paths=[str(lab["shared"])])
    me.check_data("llmfs-corpus")
    me.check_data(str(lab["ana"] / "notes.txt"))
    me.check_data(str(lab["ana"]))                      # the whole folder
    me.check_data(str(lab["shared"] / "web.jsonl"))
    me.check_model("llmfs-tiny")
    me.check_model(str(lab["runs"]["ana"] / "model"))
    me.check_model("gpt2")                              # a hub id
    me.check_data("hf:wikitext:wikitext-2-raw-v1")
    me.check_data(f"hf:json:{lab['ana']}/notes.txt")


def test_everything_else_is_refused_with_a_message(lab, monkeypatch):
    home = Path(os.path.expanduser("~"))
    me = workshop_access("ana")
    for spec in [str(lab["ben"] / "notes.txt"),          # another participant's upload
                 str(lab["ben"]),
                 str(lab["secret"] / "password.txt"),
                 "/proc/self/environ", "/etc/hostname", "~/notes.txt", str(home / "notes.txt"),
                 f"{lab['ana']}/../{lab['ben'].name}/notes.txt",      # .. out of one's own folder
                 f"{lab['home']}/uploads/*/notes.txt",                 # a glob over everyone's
                 f"{lab['home']}/uploads/{{{lab['ana'].name},{lab['ben'].name}}}/notes.txt",  # braces
                 f"hf:json:{lab['ben']}/notes.txt",
                 str(lab["shared"] / "web.jsonl")]:                    # not shared by this workshop
        refused(me.check_data, spec)
    refused(me.check_model, str(lab["runs"]["ben"] / "model"))
    refused(me.check_model, "/etc")
    refused(me.check_adapter, str(lab["runs"]["ben"]))
    refused(me.check_benchmark, "custom", str(lab["ben"] / "notes.txt"))
    refused(me.check_benchmark, "custom", "/etc/hostname")


def test_a_symlink_planted_in_an_upload_folder_leads_nowhere(lab):
    (lab["ana"] / "innocent.txt").symlink_to(lab["secret"] / "password.txt")
    (lab["ana"] / "innocent_dir").symlink_to(lab["secret"], target_is_directory=True)
    me = workshop_access("ana")
    refused(me.check_data, str(lab["ana"] / "innocent.txt"))
    refused(me.check_data, str(lab["ana"] / "innocent_dir"))
    refused(me.check_data, str(lab["ana"]))             # the folder holds the link: reading it whole is refused
    (lab["runs"]["ana"] / "model" / "model.safetensors").symlink_to(lab["secret"] / "password.txt")
    refused(me.check_model, str(lab["runs"]["ana"] / "model"))


def test_addresses_need_allow_urls_and_never_reach_the_servers_network(lab):
    refused(workshop_access("ana").check_data, "http://127.0.0.1:8501/x.tar")
    open_web = workshop_access("ana", allow_urls=True)
    for url in ["http://127.0.0.1:8501/x.tar", "http://localhost/x.tar", "https://10.0.0.7/x.tar",
                "http://169.254.169.254/latest/meta-data.tar", "http://[::1]:80/x.tar", "http://192.168.1.2/{0..1}.tar",
                "hf:json:http://127.0.0.1:9/x.jsonl"]:
        refused(open_web.check_data, url)
    open_web.check_data("s3://bucket/shard-{0..1}.tar")  # allowed by allow_urls; object stores need credentials


def test_hub_off_and_shared_runs(lab):
    no_hub = workshop_access("ana", allow_hub=False)
    refused(no_hub.check_model, "gpt2")
    refused(no_hub.check_data, "hf:wikitext")
    refused(no_hub.check_benchmark, "hellaswag", "")
    no_hub.check_benchmark("llmfs-cloze", "")
    everyone = workshop_access("ana", share_runs="all")
    everyone.check_model(str(lab["runs"]["ben"] / "model"))
    refused(everyone.check_data, str(lab["ben"] / "notes.txt"))  # uploads stay private even then


def test_a_refusal_never_says_whether_a_path_exists(lab):
    me = workshop_access("ana")
    messages = []
    for path in [str(lab["secret"] / "password.txt"), str(lab["secret"] / "missing.txt")]:
        with pytest.raises(AccessError) as e:
            me.check_data(path)
        messages.append(str(e.value).replace(path, "PATH"))
    assert messages[0] == messages[1]


def test_the_workshop_policy_checks_every_source_of_every_job(lab, marker):
    """Submissions with user names, as the app makes them: refused before anything is queued or opened."""
    jobs = JobManager(lab["home"] / "runs", telemetry_interval=60)
    jobs.register("train", _noop)
    jobs.register("eval", _noop)
    jobs.register("pipeline", _noop)
    install(jobs, WorkshopLimits(), shared=True)
    try:
        assert jobs.job_env[readers.PUBLIC_ONLY_ENV] == "1"
        for kind, cfg in [("train", {"data": str(lab["ben"] / "notes.txt")}),
                          ("train", {"model": "/etc", "data": "llmfs-corpus"}),
                          ("train", {"data": hostile_specs(marker)[0]}),
                          ("eval", {"model": "llmfs-tiny", "task": "custom", "data": "/etc/hostname"}),
                          ("eval", {"model": "llmfs-tiny", "task": "custom", "data": "x", "adapter": "/tmp"}),
                          ("pipeline", {"inputs": ["llmfs-corpus", "/proc/self/environ"]}),
                          ("pipeline", {"inputs": ["llmfs-corpus"], "out_dir": "/tmp/anywhere"})]:
            with pytest.raises(AccessError):
                jobs.submit(kind, cfg, user="ana")
        assert jobs.list_runs() == [] or all(r.status().get("user") != "ana" or r.kind != "pipeline"
                                             for r in jobs.list_runs())
        ok = jobs.submit("train", {"data": str(lab["ana"] / "notes.txt")}, user="ana")
        assert jobs.wait(ok, timeout=30) == "succeeded"
        install(jobs, WorkshopLimits(), shared=False)        # a single person's lab: free paths again
        assert readers.PUBLIC_ONLY_ENV not in jobs.job_env and jobs.policy is None
    finally:
        jobs.shutdown()


def test_submit_train_checks_access_before_it_opens_anything(lab):
    """recipes.submit_train asks the policy first: the refusal is the workshop's, not "No data at ..." from a
    preflight that looked at the file."""
    from llmfs.config import TrainConfig
    from llmfs.recipes import submit_train
    from llmfs.runner import default_manager
    jobs = default_manager(lab["home"] / "runs", telemetry_interval=60)
    install(jobs, WorkshopLimits(), shared=True)
    jobs.pause()
    try:
        class AsAna:  # what app.state.SessionJobs does for a browser session
            def admit(self, kind, cfg):
                jobs.admit(kind, cfg, user="ana")

            def submit(self, kind, cfg, **kw):
                return jobs.submit(kind, cfg, user="ana", **kw)
        with pytest.raises(AccessError, match="not yours"):
            submit_train(AsAna(), TrainConfig(data="/etc/hostname"))
        with pytest.raises(AccessError, match="not yours"):
            submit_train(AsAna(), TrainConfig(data=str(lab["secret"] / "missing.txt")))
    finally:
        jobs.shutdown()


def test_check_sources_turns_rule_one_into_a_participants_refusal(lab, marker):
    with pytest.raises(AccessError, match="refused"):
        check_sources(WorkshopLimits(), "train", {"data": hostile_specs(marker)[5]}, "ana")


def test_limits_file_takes_the_new_settings(tmp_path):
    from llmfs.config import ConfigError
    from llmfs.workshop import load_limits
    path = tmp_path / "workshop.toml"
    path.write_text('allow_hub = false\nallow_urls = true\nshared_paths = ["/data/class"]\nshare_runs = "all"\n')
    limits = load_limits(path)
    assert (limits.allow_hub, limits.allow_urls, limits.shared_paths, limits.share_runs) == \
        (False, True, ("/data/class",), "all")
    for bad in ['allow_urls = "yes"', 'shared_paths = "/data"', 'share_runs = "texts"', "shared_paths = [1]"]:
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError):
            load_limits(path)


def test_hide_paths_shows_names_not_server_paths(llmfs_home):
    home = str(llmfs_home)
    text = (f"No data at {home}/uploads/ana-1a2b3c/notes.txt; see {home}/runs/train-20261203-abc/log.txt, "
            f"{home}/default/llmfs-tiny and /etc/hostname (line 3)")
    shown = hide_paths(text)
    assert home not in shown and "/etc" not in shown
    assert "notes.txt" in shown and "run train-20261203-abc/log.txt" in shown and "built-in/llmfs-tiny" in shown
    assert ".../hostname (line 3)" in shown
    assert access.models_dir("ana").parent == llmfs_home / "models"


def _noop(ctx, cfg):
    return {}
