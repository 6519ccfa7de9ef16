"""llmfs: the library behind llmfs-lab. Never imports streamlit."""

__version__ = "0.1.0"
