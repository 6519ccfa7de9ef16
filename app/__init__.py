"""UI helpers for the Streamlit pages: state (cached singletons, session memory), forms (dataclass -> widgets),
panels (the live run panel, run comparison), charts (plotly figures from run metrics), tables (run listings).

Layering: pages -> app -> llmfs. Nothing in llmfs imports this package.
"""

# transformers 5 swaps its module object in sys.modules while it is first imported: a second script thread
# (Streamlit's fast reruns start one before the last has stopped) importing it at that moment gets the half-built
# module ("cannot import name 'AutoConfig' from 'transformers'"). Importing it here, once, under this package's
# import lock, makes every page wait for that one import.
import transformers  # noqa: F401, E402


def _leave_legacy_pages_mode() -> None:
    """Make the first page a fresh server serves go through the router.

    Streamlit runs a server in its old "pages/ directory" mode until some session calls `st.navigation`. If the
    first visitor opens a page's URL directly (a bookmark, a refresh after a restart), that page script runs on
    its own: no page config, no sections, file names in the sidebar. Every page imports this package first, so
    here, once per process, we switch the mode off and rerun through streamlit_app.py, which the URL then routes.
    """
    try:
        import streamlit as st
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:  # a Streamlit without these internals: at worst the first page looks plain
        return
    if PagesManager.uses_pages_directory and get_script_run_ctx() is not None:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_pages_mode()
