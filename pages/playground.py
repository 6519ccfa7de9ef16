"""Playground: talk to a model and its adapters side by side, every token coloured by how likely the model found
it."""

import streamlit as st

from app import playground_view

st.title("Playground")
st.markdown("""
Talk to a model, or let it continue a text, and see what an **adapter** changed: the model alone and the model with
each adapter you pick answer the same message with the same seed, side by side. Every word the model writes is made
of **tokens**; each is coloured by how likely the model found it, and pointing at one shows what else it considered.
""")
playground_view.chat_panel("play")
