"""Settings files on the lesson pages (issue 19): "Save these settings" gives a TOML file the command line reads
(`--config`); "Load settings" puts a file's values into the page's widgets, L15's LoRA controls and L13's pickers
included, and refuses a wrong file with its line, changing nothing; the instructor's class preset is where every
participant's form starts (AppTest, no training)."""

from __future__ import annotations

import apphelpers  # tests/app is on sys.path
import pytest
from apphelpers import REPO, texts, unescaped
from streamlit.testing.v1 import AppTest

from app import identity, instructor_view, settings_view
from llmfs import classroom
from llmfs.config import TrainConfig
from llmfs.config_files import parse_settings
from llmfs.data.pipeline import PipelineConfig

pytestmark = pytest.mark.usefixtures("router_on_every_run")  # see tests/app/conftest.py

PASSWORD = "s3cret-for-tests"


def upload(at: AppTest, key: str, name: str, text: str) -> AppTest:
    return at.file_uploader(key=f"{key}.settings_file").set_value((name, text.encode(), "application/toml")).run()


def number(at: AppTest, key: str):
    return at.number_input(key=key).value


def test_a_loaded_file_fills_l16s_form_and_its_saved_file_reads_back(llmfs_home):
    at = apphelpers.open_page("pages/l16_precision.py")
    assert any(e.label == "Settings files: save, load, share" for e in at.expander)
    at = upload(at, "l16", "mine.toml", "# my settings\nsteps = 7\nlr = 0.002\nbatch_size = 3\ntf32 = true\n")
    assert not at.exception
    assert (number(at, "l16.steps"), number(at, "l16.lr"), number(at, "l16.batch_size")) == (7, 0.002, 3)
    assert at.checkbox(key="l16.tf32").value is True
    said = unescaped(texts(at.success))
    assert "Loaded mine.toml: 4 settings put into the form" in said and "steps" in said

    # what Save would give now: the form's config, which the command line's parser reads back
    cfg = TrainConfig(steps=7, lr=0.002, batch_size=3, tf32=True, save_model=False)
    text = settings_view._file_text(TrainConfig, "l16", cfg, "l16")
    assert "python -m llmfs train --config l16-settings.toml" in text
    values = parse_settings(text, TrainConfig, source="l16-settings.toml")
    assert TrainConfig(**values) == cfg


def test_a_wrong_file_is_refused_with_its_line_and_changes_nothing(llmfs_home):
    at = apphelpers.open_page("pages/l16_precision.py")
    before = number(at, "l16.steps")
    at = upload(at, "l16", "bad.toml", "steps = 9\nbatch_sise = 4\n")
    message = unescaped(texts(at.error))
    assert "bad.toml" in message and "line 2" in message and "batch_size" in message
    assert "Nothing was changed" in message
    assert number(at, "l16.steps") == before
    at = upload(at, "l16", "range.toml", "steps = 9\nlr = 5.0\n")
    message = unescaped(texts(at.error))
    assert "line 2" in message and "Learning rate" in message
    assert number(at, "l16.steps") == before


def test_l15_loads_lora_settings_into_its_own_controls(llmfs_home):
    at = apphelpers.open_page("pages/l15_lora.py")
    at = upload(at, "l15", "lora.yaml", "lora_rank: 16\nlora_alpha: 32\nlora_targets: qkv,mlp_in,q_proj\n"
                                        "steps: 12\nfreeze: full\nsave_model: false\n")
    assert not at.exception
    assert at.select_slider(key="l15.lora_rank").value == 16
    assert number(at, "l15.lora_alpha") == 32.0
    assert at.multiselect(key="l15.lora_targets").value == ["qkv", "mlp_in"]
    assert at.text_input(key="l15.lora_modules").value == "q_proj"
    assert number(at, "l15.steps") == 12
    said = unescaped(texts(at.success))
    assert "Not on this page, so not used here: save_model = False" in said   # freeze: full is the default
    assert "freeze" not in said.split("Not on this page")[1]


def test_l13_loads_sources_filters_and_deduplication(llmfs_home):
    at = apphelpers.open_page("pages/l13_data.py")
    text = ('inputs = ["llmfs-corpus", "hf:wikitext"]\nweights = [0.7, 0.3]\nfilters = ["c4"]\n'
            'dedup = "exact"\nlimit = 50\n')
    assert PipelineConfig(**parse_settings(text, PipelineConfig, source="p.toml")).dedup == "exact"
    at = upload(at, "l13", "p.toml", text)
    assert not at.exception
    assert at.multiselect(key="l13.filters").value == ["c4"]
    assert at.radio(key="l13.dedup").value == "exact"
    assert at.text_input(key="l13.hub").value == "hf:wikitext"
    assert number(at, "l13.w.builtin") == 0.7 and number(at, "l13.w.hub") == 0.3
    assert number(at, "l13.limit") == 50


# -- the class preset -----------------------------------------------------------------------------------------------
@pytest.fixture
def workshop(llmfs_home, monkeypatch):
    (llmfs_home / "workshop.toml").write_text("max_queued_per_user = 5\n")
    monkeypatch.setenv("LLMFS_INSTRUCTOR_PASSWORD", PASSWORD)
    monkeypatch.setattr(instructor_view, "WRONG_PASSWORD_DELAY_S", 0.0)
    return llmfs_home


def open_as(name: str | None, page: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    if name:
        at.session_state[identity.NAME_KEY] = name
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_instructors_preset_is_where_a_participants_form_starts(workshop):
    teacher = open_as("Teacher", "pages/instructor.py")
    teacher.text_input(key="instructor.password").input(PASSWORD)
    next(b for b in teacher.button if b.label == "Unlock").click().run()
    teacher.switch_page("pages/l16_precision.py").run()
    teacher.number_input(key="l16.steps").set_value(33).run()
    teacher.number_input(key="l16.lr").set_value(0.005).run()
    next(b for b in teacher.button if b.label == "Make these the class preset").click().run()
    assert "Class preset saved" in texts(teacher.success)
    preset = classroom.load_preset("l16")
    assert preset["cls"] == "TrainConfig" and preset["values"]["steps"] == 33 and preset["values"]["lr"] == 0.005

    ada = open_as("Ada", "pages/l16_precision.py")
    assert (number(ada, "l16.steps"), number(ada, "l16.lr")) == (33, 0.005)
    assert "class preset your instructor set" in texts(ada.caption)
    assert not any(b.label == "Make these the class preset" for b in ada.button)  # participants cannot
    ada.number_input(key="l16.steps").set_value(5).run()   # and they can still change it
    assert number(ada, "l16.steps") == 5

    next(b for b in teacher.button if b.label == "Remove the class preset").click().run()
    assert classroom.load_preset("l16") is None
    bob = open_as("Bob", "pages/l16_precision.py")
    assert number(bob, "l16.steps") == 60   # the page's own default again
