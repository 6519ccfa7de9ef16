"""Workshop · Instructor: behind the instructor password, every run, the queue's pause switch, the limits and the
cached models' memory (see app/instructor_view.py)."""

import streamlit as st

from app import instructor_view

st.title("Instructor")
st.markdown("For whoever runs the workshop: everyone's runs, the shared queue and the server's limits.")
if instructor_view.gate():
    instructor_view.dashboard()
