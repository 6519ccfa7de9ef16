"""llmfs-lab: the router. Page config, navigation and the sidebar every page shares; every page lives in pages/."""

import streamlit as st

from app import identity, panels

st.set_page_config(page_title="llmfs-lab", page_icon=":material/school:", layout="wide")

PAGES = {
    "Start": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
    "Lessons": [
        st.Page("pages/l12_pretrained.py", title="L12 Pretrained weights", icon=":material/download:"),
        st.Page("pages/l13_data.py", title="L13 Data pipelines", icon=":material/filter_alt:"),
        st.Page("pages/l14_eval.py", title="L14 Evaluation", icon=":material/fact_check:"),
        st.Page("pages/l15_lora.py", title="L15 LoRA & QLoRA", icon=":material/tune:"),
        st.Page("pages/l16_precision.py", title="L16 Mixed precision", icon=":material/speed:"),
    ],
    "Try": [st.Page("pages/playground.py", title="Playground", icon=":material/forum:")],
    "Your work": [st.Page("pages/runs.py", title="Runs", icon=":material/history:")],
    "Workshop": [st.Page("pages/instructor.py", title="Instructor", icon=":material/admin_panel_settings:")],
}

page = st.navigation(PAGES, expanded=True)
if page.url_path != "instructor":  # the instructor needs no participant name
    identity.name_prompt()
panels.workshop_sidebar()
page.run()
