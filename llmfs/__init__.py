"""llmfs: the library behind llmfs-lab. Never imports streamlit."""

__version__ = "0.1.0"

import logging as _logging

# bitsandbytes (imported by peft) tries, on import, to fetch an optional CPU kernel from the Hugging Face hub and
# logs a warning when it cannot (always, offline); its built-in kernel is used instead and works. Keep it quiet.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
