"""Settings as files, under a page's form: "Save these settings" (a TOML file the command line reads with
`--config`), "Load settings" (a TOML / YAML file put into the form's widgets, refused with its line when it is
wrong), and, for the instructor of a workshop, "Make these the class preset" (`llmfs.classroom`): every
participant's form then starts from those values (`start_values`), and they can still change them.

A form's widgets are keyed `<form key>.<field>` (`app.forms.config_form`), so loading a file is writing those keys
before the widgets are drawn (in the uploader's callback); the model and data pickers keep their choice in
sub-keys, set here the way the pickers read them.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import streamlit as st

from llmfs import classroom
from llmfs.config import field_info
from llmfs.config_files import ConfigFileError, command_for, dump_settings, parse_settings

from . import identity
from .choices import data_choice, model_choice
from .text import md_escape

SUFFIXES = ("toml", "yaml", "yml")
MAX_FILE_BYTES = 64 * 1024   # a settings file is a few lines; anything bigger is not one


def _drawn_key(key: str) -> str:
    return f"_settings.{key}.drawn"


def remember_drawn(key: str, names: list[str]) -> None:
    """The fields form `key` draws as widgets (`config_form` calls this): a loaded file can set only those."""
    known = st.session_state.get(_drawn_key(key)) or []
    st.session_state[_drawn_key(key)] = list(dict.fromkeys([*known, *names]))   # a page may draw one key twice (L15)


def start_values(key: str, cls: type, start: dict) -> dict:
    """A form's starting values with the class preset for this form laid over them (fields of `cls` only), and a
    caption saying so. Widgets a person already changed keep their values (they hold them in the session)."""
    preset = _preset(key, cls) if identity.workshop_mode() else None
    if not preset:
        return start
    when = time.strftime("%H:%M", time.localtime(preset.get("saved") or time.time()))
    info = field_info(cls)
    differ = [f"{info[n].get('label') or n} {v}" for n, v in preset["values"].items()
              if v != start.get(n, info[n]["default"])]
    st.caption(md_escape(f"This form starts from the class preset your instructor set at {when}"
                         + (f" ({', '.join(differ)})" if differ else "") + ". Change anything you like."))
    return {**start, **preset["values"]}


def _preset(key: str, cls: type) -> dict | None:
    """The class preset of form `key` when it was saved for this kind of form, its values limited to `cls`'s
    fields (an older preset may hold a field since renamed)."""
    try:
        preset = classroom.load_preset(key)
    except (OSError, ValueError):
        return None
    if not preset or preset.get("cls") != cls.__name__:
        return None
    names = set(field_info(cls))
    return {**preset, "values": {k: v for k, v in (preset.get("values") or {}).items() if k in names}}


def settings_files(cls: type, key: str, cfg: Any | None, *, page: str, also: tuple[str, ...] = (),
                   apply_extra: Callable[[dict], list[str]] | None = None, note: str = "",
                   boxed: bool = True) -> None:
    """The settings-file controls under form `key`: save `cfg` (None: the form refused its values, so there is
    nothing valid to save), load a file into the form, and the instructor's class preset.

    Args:
        page: the page's short name, for the file name (`l12-settings.toml`).
        also: the keys of other `config_form`s of the same config on the page (L12's freezing step): a loaded
            file sets their fields too.
        apply_extra: for fields the page draws with widgets of its own (not `config_form`'s): puts the loaded
            values into them and returns the names it set.
        note: a line on what the saved file holds, where the page's form is not the whole story (L14).
        boxed: in an expander of its own (False inside another expander, which cannot hold one).
    """
    command = command_for(cls.__name__)
    # open while it has something to say (a click on a button inside it reruns the page, and an expander drawn
    # with other arguments than before starts closed again: the message would be hidden)
    pending = bool(st.session_state.get(f"{key}.settings_said"))
    box = (st.expander("Settings files: save, load, share", icon=":material/settings:", expanded=pending) if boxed
           else st.container(border=True))
    with box:
        if note:
            st.caption(md_escape(note))
        st.caption(f"Save this form's settings as a file to keep them, share them, or run them from a terminal "
                   f"(`python -m llmfs {command} --config {page}-settings.toml`), and load a saved file back here.")
        save, load = st.columns(2, vertical_alignment="top")
        with save:
            text = _file_text(cls, key, cfg, page) if cfg is not None else ""
            st.download_button("Save these settings", data=text, file_name=f"{page}-settings.toml",
                               mime="application/toml", icon=":material/download:", key=f"{key}.settings_save",
                               disabled=cfg is None,
                               help="A TOML file with every training setting this form makes: those it shows, "
                                    "and the rest at the values the page uses." if cfg is not None else
                                    "The form above refuses a value: fix it first (its message says how).")
        with load:
            st.file_uploader("Load settings (.toml or .yaml)", type=list(SUFFIXES), key=f"{key}.settings_file",
                             max_upload_size=1,   # MB: a settings file is a few lines (MAX_FILE_BYTES is checked too)
                             on_change=_load, args=(cls, (key, *also), apply_extra),
                             help="A file saved here or written by hand: one `name = value` a line, the names "
                                  f"`python -m llmfs {command} --help` lists with - as _ (seq_len, batch_size, ...).")
        _said(key)
        if identity.workshop_mode() and identity.is_instructor():
            _preset_controls(cls, key, cfg)


def _file_text(cls: type, key: str, cfg: Any, page: str) -> str:
    command = command_for(cls.__name__)
    header = (f"llmfs {command} settings, saved from the {page} page on {time.strftime('%Y-%m-%d %H:%M')}.\n"
              f"Run them from a terminal: python -m llmfs {command} --config {page}-settings.toml\n"
              "Load them back with 'Load settings' under the page's form. Flags given with --config override the file.")
    return dump_settings(cls, cfg, header=header)


def _load(cls: type, keys: tuple[str, ...], apply_extra: Callable[[dict], list[str]] | None) -> None:
    """The uploader's callback (it runs before the page is drawn, so the widgets may still be written)."""
    key = keys[0]
    upload = st.session_state.get(f"{key}.settings_file")
    if upload is None:   # the person took the file out of the uploader: nothing to do
        return
    said = f"{key}.settings_said"
    data = upload.getvalue()
    if len(data) > MAX_FILE_BYTES:
        st.session_state[said] = ("error", f"{upload.name} is {len(data):,} bytes; a settings file is a few lines "
                                           f"(at most {MAX_FILE_BYTES // 1024} KB). Choose the file saved here.")
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        st.session_state[said] = ("error", f"{upload.name} is not a text file (not UTF-8): choose the .toml "
                                           "or .yaml file saved here.")
        return
    try:
        values = parse_settings(text, cls, source=upload.name)
    except ConfigFileError as e:
        st.session_state[said] = ("error", f"{e} Nothing was changed in the form.")
        return
    applied, skipped = apply_values(cls, keys, values, apply_extra)
    message = (f"Loaded {upload.name}: {len(applied)} setting{'s' if len(applied) != 1 else ''} put into the form"
               + (f" ({', '.join(applied)})" if applied else ""))
    # a saved file holds every setting; those this page does not show are worth a word only where the file
    # changes them (a page's own file would otherwise list dozens of names at their defaults)
    info = field_info(cls)
    changed = [n for n in skipped if values[n] != info[n]["default"]]
    if changed:
        message += (". Not on this page, so not used here: "
                    + ", ".join(f"{n} = {values[n]}" for n in changed) + " (the command line reads them with "
                    "--config)")
    st.session_state[said] = ("success", message + ".")


def _said(key: str) -> None:
    said = st.session_state.pop(f"{key}.settings_said", None)   # said once, after the person acted
    if said:
        kind, message = said
        (st.error if kind == "error" else st.success)(md_escape(message),
                                                        icon=":material/error:" if kind == "error"
                                                        else ":material/check_circle:")


def apply_values(cls: type, keys: tuple[str, ...], values: dict,
                 apply_extra: Callable[[dict], list[str]] | None = None) -> tuple[list[str], list[str]]:
    """Write `values` into the widgets of the forms `keys` (each sets the fields it draws); (the fields set, the
    fields none of them draws)."""
    info = field_info(cls)
    applied: list[str] = []
    for key in keys:
        drawn = st.session_state.get(_drawn_key(key))
        for name, value in values.items():
            if name in applied or (drawn is not None and name not in drawn) or (drawn is None and key != keys[0]):
                continue
            _set_widget(f"{key}.{name}", name, info[name], value)
            applied.append(name)
    if apply_extra is not None:
        applied += [n for n in apply_extra({k: v for k, v in values.items() if k not in applied}) if n not in applied]
    skipped = [n for n in values if n not in applied]
    return applied, skipped


def _set_widget(wkey: str, name: str, meta: dict, value: Any) -> None:
    """Put one value where its widget reads it (the pickers' choice and text box for a model or data source)."""
    if name in ("model", "data"):
        kind, text = (model_choice if name == "model" else data_choice)(value)
        st.session_state[f"{wkey}.kind"] = kind
        box = {"hub": "hub", "hubdata": "hub", "folder": "path", "path": "path"}.get(kind)
        if box:
            st.session_state[f"{wkey}.{box}"] = text
        return
    if isinstance(value, tuple):
        value = ", ".join(map(str, value)) if not meta.get("choices") else value
    if value is None and meta.get("default") is not None and isinstance(meta.get("default"), str):
        value = ""
    st.session_state[wkey] = value


def _preset_controls(cls: type, key: str, cfg: Any | None) -> None:
    """The instructor's: make this form's values the class's starting point, or take the preset away."""
    preset = _preset(key, cls)
    left, right = st.columns(2)
    left.button("Make these the class preset", key=f"{key}.preset_save", icon=":material/school:",
                disabled=cfg is None, on_click=_push, args=(cls, key, cfg),
                help="Every participant's form on this page starts from these settings (they can change them). "
                     "The Instructor page lists the presets.")
    if preset:
        right.button("Remove the class preset", key=f"{key}.preset_remove", icon=":material/delete:",
                     on_click=_remove, args=(key,))
        st.caption(f"A class preset is set for this form ({len(preset['values'])} settings).")


def _push(cls: type, key: str, cfg: Any) -> None:
    drawn = st.session_state.get(_drawn_key(key))
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if drawn is None or k in drawn}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    try:
        classroom.save_preset(key, cls.__name__, values, by=identity.current_user() or "instructor")
    except (OSError, ValueError) as e:
        st.session_state[f"{key}.settings_said"] = ("error", f"The preset was not saved: {e}")
        return
    st.session_state[f"{key}.settings_said"] = ("success", "Class preset saved: every participant's form on this "
                                                            "page now starts from these settings.")
    st.toast("Class preset saved.", icon=":material/school:")


def _remove(key: str) -> None:
    classroom.delete_preset(key)
    st.session_state[f"{key}.settings_said"] = ("success", "Class preset removed: the page starts from its own "
                                                            "defaults again.")
