"""llmfs-lab: the router. Page config and navigation only; every page lives in pages/."""

import streamlit as st

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
    "Your work": [st.Page("pages/runs.py", title="Runs", icon=":material/history:")],
}

st.navigation(PAGES, expanded=True).run()
