"""L12 building blocks: the loaded model (cached, shared, never mutated: a GPT-2 or a Llama-family model such as
smollm2-135m), what it is, its architecture, parity with transformers, the name map from the checkpoint, a greedy
answer, the vocabulary (against GPT-2's real tokenizer), the freezing layer map, the pretrained-vs-random comparison
and the before / after samples."""

from __future__ import annotations

import re
import time
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from llmfs import memory
from llmfs.access import models_dir
from llmfs.config import TrainConfig
from llmfs.freeze import plan_freeze
from llmfs.sources import SourceError
from llmfs.targets import STRATEGIES
from llmfs.timing import BIG, action_seconds

from . import charts, choices, forms, identity, panels, run_panels, state
from .text import md_escape, rough_duration

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def loaded(source: str):
    """(model, tokenizer, folder), shared by every session. Never mutate it: a training job loads its own copy."""
    from llmfs.sources import resolve_model_dir
    from llmfs.weights import load_pretrained
    folder = resolve_model_dir(source)
    model, tokenizer = load_pretrained(str(folder))
    return model.eval(), tokenizer, folder


@st.cache_resource(max_entries=2, show_spinner="Drawing random weights for the same architecture ...")
def random_twin(source: str, seed: int = 0):
    """The architecture of `source` with freshly drawn random weights (what a training run with init "random"
    starts from), shared by every session like `loaded`; never mutated."""
    import torch
    model, _, _ = loaded(source)
    torch.manual_seed(seed)
    return type(model)(model.config).eval()


@st.cache_resource(max_entries=2, show_spinner="Reading GPT-2's tokenizer ...")
def gpt2_tokenizer(stamp: str, _folder: str):
    """GPT-2's real tokenizer (50,257 tokens), built once from the file `openai-whisper` ships and kept in
    `_folder` (`llmfs.packaged.gpt2_tokenizer_folder()`); cached by `stamp`, its saved file's size and time, so
    the same file read from another LLMFS_HOME is not read again."""
    from llmfs.packaged import gpt2_tokenizer as build
    return build(Path(_folder))


# -- how long things take on a CPU: llmfs.timing.action_seconds, BIG ---------------------------------------------
def duration(seconds: float) -> str:
    """A wait in words: "a second or two", "about 20 s", "about 2 min"."""
    if seconds < 3:
        return "a second or two"
    if seconds < 90:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s"
    return rough_duration(seconds)


def table_height(rows: int) -> int:
    """Pixels for a dataframe that shows `rows` rows and its header without scrolling."""
    return 38 + 35 * max(1, rows)


def params_of(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


# -- 1 · load ------------------------------------------------------------------------------------------------------
def model_picker(key: str) -> tuple | None:
    """The model chooser with a Load button; the loaded (model, tokenizer, folder, source) or None, errors shown
    inline."""
    from llmfs.packaged import PACKAGED
    from llmfs.sources import builtin_folder
    source = forms.config_form(TrainConfig, key=f"{key}.pick", fields=["model"])
    source = source.model if source else None
    if source in PACKAGED:   # what loading costs, before the button is pressed (the picker says what it is)
        st.caption("The first load unpacks it from its Python package (under a minute, once on this machine), "
                   "then loads it: about 5 s." if builtin_folder(source) is None else "Loading takes about 5 s.")
    if source:
        st.button("Load", key=f"{key}.load", icon=":material/download:", on_click=use_loaded, args=(key, source))
    chosen = st.session_state.get(f"{key}.source")
    if not chosen:
        st.caption("Pick a model and press **Load**. llmfs-tiny and smollm2-135m are built in and work offline; "
                   "hub ids need a network.")
        return None
    try:
        state.ensure_builtins(chosen)
        return (*loaded(chosen), chosen)
    except (SourceError, ValueError, OSError) as e:
        st.error(md_escape(e), icon=":material/error:")
        return None


def use_loaded(key: str, source: str) -> None:
    """Load `source` (the Load button's callback), and make step 4's model picker take it too: its widgets keep
    their own state once drawn, so a new default alone would leave them on the old model. A callback runs before
    the script, where a widget's value may be set."""
    st.session_state[f"{key}.source"] = source
    for part in ("kind", "path", "hub", "mine"):
        value = st.session_state.get(f"{key}.pick.model.{part}")
        if value is not None:
            st.session_state[f"{key}.model.{part}"] = value


def about(source: str, folder, model) -> None:
    """What was loaded, in a sentence: its family, size and, for a packaged model, where it comes from and its
    licence (the picker above says what it is, in `PackagedModel.about`'s words)."""
    from llmfs.packaged import PACKAGED
    family = "Llama-family" if is_llama(model) else "GPT-2"
    ours = "our from-scratch Llama (llmfs.llama)" if is_llama(model) else "our from-scratch GPT (llmfs.model)"
    size = folder_bytes(folder)
    facts = (f"{params_of(model):,} parameters; {charts.fmt_bytes(size)} of weights on disk "
             f"({str(next(model.parameters()).dtype).removeprefix('torch.')} in memory).")
    if source in PACKAGED:
        spec = PACKAGED[source]
        st.info(f"**Loaded {md_escape(source)}** (from {md_escape(spec.original)}, licence "
                f"{md_escape(spec.licence)}, its 4-bit copy unpacked) into {ours}: {facts}", icon=":material/info:")
    else:
        name = md_escape(choices.model_name(source))
        st.caption(f"**{name}**: a {family} checkpoint, read into {ours}. {facts}")


def folder_bytes(folder) -> int:
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")) + \
        sum(f.stat().st_size for f in Path(folder).glob("*.bin"))


def is_llama(model) -> bool:
    from llmfs.llama import Llama
    return isinstance(model, Llama)


def architecture(model) -> None:
    from llmfs.weights import model_summary
    s = model_summary(model)
    llama = s["family"] == "llama"
    n = s["total_params"]
    metrics = [("Parameters", f"{n:,}" if n < 10_000_000 else f"{n / 1e6:,.1f}M",
                f"{n:,} numbers the model learned (a tied head counted once)."),
               ("Blocks", s["n_layer"], "Transformer blocks stacked on top of each other.")]
    if llama:
        metrics += [("Query heads", s["n_head"], "Attention heads per block: each looks for a different kind of "
                                                 "relation between tokens."),
                    ("Key / value heads", s["n_kv_head"], "Heads that compute keys and values; each serves a "
                                                          "group of query heads (grouped-query attention).")]
    else:
        metrics += [("Heads", s["n_head"], "Attention heads per block: each looks for a different kind of "
                                           "relation between tokens.")]
    metrics += [("Width", s["n_embd"], "Size of the vector that represents each token inside the model."),
                ("Context", f"{s['n_positions']:,}", "The most tokens the model can look at at once.")]
    for col, (label, value, help_) in zip(st.columns(len(metrics)), metrics):
        col.metric(label, value, help=help_)
    fig = go.Figure(go.Bar(x=[g["params"] for g in s["groups"]], y=[g["group"] for g in s["groups"]],
                           orientation="h", text=[f"{g['share']:.0%}" for g in s["groups"]],
                           marker_color="#4c6ef5"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Where the parameters are",
                      xaxis_title="parameters", yaxis=dict(autorange="reversed"))
    st.plotly_chart(fig, width="stretch")
    st.markdown("\n".join(f"- {line}" for line in how_it_is_built(s)))


def how_it_is_built(s: dict) -> list[str]:
    """The architecture in plain sentences (Markdown), from `model_summary`."""
    head = ("**Output head**: tied to (shares) the token embeddings" if s["tie_word_embeddings"]
            else "**Output head**: a separate matrix") + f", one score per token of the {s['vocab_size']:,}."
    if s["family"] != "llama":
        return [f"**Attention**: {s['n_head']} heads per block, each with its own queries, keys and values.",
                f"**Positions**: a learned table of {s['n_positions']:,} position vectors (wpe) added to the "
                "token embeddings: the model cannot read further than that.",
                f"**MLP**: {s['n_embd']:,} → {4 * s['n_embd']:,} → {s['n_embd']:,} numbers, with a GELU between.",
                "**Norms**: LayerNorm before attention and before the MLP.", head]
    group = s["n_head"] // s["n_kv_head"]
    gqa = (f"**Grouped-query attention**: {s['n_head']} query heads share {s['n_kv_head']} key / value heads, "
           f"{group} query heads to each. The keys and values a generation keeps for every past token take "
           f"1/{group} of the memory they would with one per query head." if group > 1 else
           f"**Attention**: {s['n_head']} heads per block, each with its own queries, keys and values.")
    return [gqa,
            f"**Positions**: rotary embeddings (rope_theta {s['rope_theta']:,.0f}): no table of positions; each "
            "query and key is turned by an angle that grows with its position, so attention sees how far apart "
            "two tokens are.",
            f"**MLP**: SwiGLU: {s['n_embd']:,} → two {s['intermediate_size']:,}-wide layers (gate and up, "
            f"multiplied) → {s['n_embd']:,} (down).",
            "**Norms**: RMSNorm (LayerNorm without the mean) before attention and before the MLP.", head]


def parity(folder, model, tokenizer, key: str) -> None:
    text = st.text_input("Text to compare on", value="The quick brown fox jumps over the lazy dog.",
                         key=f"{key}.parity_text", persist_state="session")
    params = params_of(model)
    wait = action_seconds("parity", params)
    if st.button("Run the parity check", key=f"{key}.parity", icon=":material/compare_arrows:",
                 help=f"Takes {duration(wait)} on a 2-core CPU: transformers loads its own copy of the weights."):
        from llmfs.weights import parity_check
        t0 = time.time()
        with st.spinner(f"Running the text through both models ({duration(wait)}) ..."):
            res = parity_check(folder, text, tokenizer=tokenizer, model=model)
        st.session_state[f"{key}.parity_result"] = {**res, "seconds": time.time() - t0, "folder": str(folder)}
    res = st.session_state.get(f"{key}.parity_result")
    if not res or res.get("folder") != str(folder):   # nothing yet, or the check of another model
        if params > BIG:
            st.caption(f"Takes {duration(wait)} on a 2-core CPU: transformers loads its own copy of the weights.")
        return
    ok = res["ok"]
    (st.success if ok else st.error)(
        f"Largest difference between our logits and transformers' {res['reference']}: "
        f"**{res['max_abs_delta']:.1e}** (allowed: {res['tolerance']:.0e}) over {res['n_tokens']} tokens. "
        + ("The conversion is exact up to float rounding." if ok else "The conversion is wrong."),
        icon=":material/check_circle:" if ok else ":material/error:")
    st.dataframe({"our top-5 next tokens": [shown_token(t) for t in res["ours_top5"]],
                  "transformers' top-5": [shown_token(t) for t in res["reference_top5"]]},
                 hide_index=False, width="content")
    st.caption("␣ is a space, ⏎ a line break, ⇥ a tab: a token is often a word with the space before it. "
               f"(The check took {res['seconds']:.0f} s.)")


WHITESPACE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍", "\u00a0": "⍽"}


def shown_token(token: str) -> str:
    """A token as text a person can see: every space, line break and tab as a visible sign (`␣the`, `⏎`), other
    invisible characters by their code (`\\x0b`), and the empty token as `(empty)`."""
    if token == "":
        return "(empty)"
    return "".join(WHITESPACE.get(ch) or (ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256
                                          else f"\\u{ord(ch):04x}") for ch in token)


def name_rows(model) -> list[dict]:
    """How each tensor of the checkpoint becomes one of ours, one row per kind of tensor (a block's tensors once,
    with N for its number): our name, the Hugging Face name, both shapes, and what the loader does."""
    from llmfs.llama import weight_map
    from llmfs.weights import CONV1D_SUFFIXES
    llama = is_llama(model)
    embedding = "model.embed_tokens.weight" if llama else "transformer.wte.weight"
    tied = model.lm_head.weight is dict(model.named_parameters())[embedding]
    rows, seen = [], set()
    for name, p in model.named_parameters(remove_duplicate=False):
        pattern = re.sub(r"^(model\.layers|transformer\.h)\.\d+\.", r"\1.{i}.", name)
        if pattern in seen:
            continue
        seen.add(pattern)
        shape = tuple(p.shape)
        if llama:   # HF's own names: the map is the identity, kept as data in llmfs.llama
            hf, file_shape, how = weight_map(model.config)[pattern], shape, "as it is"
        elif name.endswith(CONV1D_SUFFIXES):   # GPT-2's Conv1D stores (in, out); nn.Linear (out, in)
            hf, file_shape, how = pattern, shape[::-1], "transposed: GPT-2's Conv1D stores (in, out)"
        else:
            hf, file_shape, how = pattern, shape, "as it is"
        if name == "lm_head.weight" and tied:
            hf, file_shape, how = "(not stored)", None, f"tied: the same tensor as {embedding}"
        rows.append({"our tensor": pattern.replace("{i}", "N"),
                     "in the Hugging Face checkpoint": hf.replace("{i}", "N"), "our shape": " × ".join(map(str, shape)),
                     "its shape there": " × ".join(map(str, file_shape)) if file_shape else "-", "loading": how})
    return rows


def name_map(model) -> None:
    rows = [{k: md_escape(v) for k, v in row.items()} for row in name_rows(model)]   # st.table reads Markdown
    st.table(rows, hide_index=True)
    n = model.config.n_layer
    if is_llama(model):
        st.caption(f"N is a block's number, 0 to {n - 1}. Our Llama uses Hugging Face's names as they are "
                   "(llmfs.llama.WEIGHT_MAP lists them as data), so loading is a plain load_state_dict; only the "
                   "rotary angles are computed, not read.")
    else:
        st.caption(f"N is a block's number, 0 to {n - 1}. Our GPT uses Hugging Face GPT-2's names; four matrices "
                   "per block are transposed, because GPT-2 stores them in a Conv1D layer, (in, out), where "
                   "nn.Linear keeps (out, in). Hub checkpoints such as gpt2 leave out the `transformer.` prefix, "
                   "and older ones store the causal masks (attn.bias), which we drop.")


# -- asking the model ------------------------------------------------------------------------------------------------
ASK_TOKENS = 40
ASK_PROMPT = "What is the capital of France?"


def prompt_text(tokenizer, question: str, chat: bool) -> str:
    """What the model reads: `question` through the tokenizer's chat template (as the user's turn, with the
    assistant's turn opened), or as it is."""
    if not chat:
        return question
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)


def greedy_answer(model, tokenizer, text: str, max_new_tokens: int = ASK_TOKENS) -> str:
    """The most likely continuation of `text`, token by token (greedy: the same every time)."""
    from llmfs.generate import SampleConfig, generate_text
    return generate_text(model, tokenizer, text, SampleConfig(max_new_tokens=max_new_tokens, temperature=0.0))


def ask(model, tokenizer, key: str) -> None:
    """A question and the model's greedy answer, through its chat template when it has one."""
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    question = st.text_input("Question or text to continue", value=ASK_PROMPT, key=f"{key}.ask_text",
                             persist_state="session")
    chat = st.checkbox("Through its chat template", value=has_chat, disabled=not has_chat, key=f"{key}.ask_chat",
                       help="An instruct model was fine-tuned on conversations written in a fixed format: the "
                            "template wraps your text as the user's turn and opens the assistant's.")
    if not has_chat:
        st.caption("This model has no chat template: it was trained to continue text, not to answer, so it "
                   "continues yours.")
    wait = action_seconds("token", params_of(model), ASK_TOKENS)
    if st.button("Answer", key=f"{key}.ask", icon=":material/chat:",
                 help=f"Up to {ASK_TOKENS} tokens, the most likely one each time: {duration(wait)} on a 2-core CPU."):
        text = prompt_text(tokenizer, question, chat and has_chat)
        with st.spinner(f"Generating ({duration(wait)}) ..."):
            st.session_state[f"{key}.answer"] = {"text": text, "answer": greedy_answer(model, tokenizer, text),
                                                 "model": id(model)}
    got = st.session_state.get(f"{key}.answer")
    if got and got["model"] == id(model):
        st.caption(("Its answer" if has_chat else "How it continues") +
                   " (greedy: the most likely token each time, so the same every time)")
        st.code(got["answer"] or "(nothing: it ended at once)", language=None, wrap_lines=True)
        with st.expander("What the model read"):
            st.code(got["text"], language=None, wrap_lines=True)
    elif params_of(model) > BIG:
        st.caption(f"Up to {ASK_TOKENS} tokens: {duration(wait)} on a 2-core CPU.")


# -- 2 · vocabulary --------------------------------------------------------------------------------------------------
TOKENIZE_TEXT = "Hello world! asyncio.gather runs coroutines concurrently."
HELDOUT_TEXT = ("Lists are mutable sequences, typically used to store collections of similar items. The sort() "
                "method sorts the list in place, and sorted() returns a new sorted list from any iterable.")


def load_gpt2_tokenizer():
    """GPT-2's tokenizer, or None after saying why it is missing (openai-whisper not installed)."""
    from llmfs.packaged import gpt2_tokenizer_folder
    folder = gpt2_tokenizer_folder()
    try:
        saved = (folder / "tokenizer.json").stat()
        stamp = f"{saved.st_size}-{saved.st_mtime_ns}"
    except OSError:   # not built yet in this LLMFS_HOME: built (a few seconds, once) and saved there
        stamp = f"new:{folder}"
    try:
        return gpt2_tokenizer(stamp, str(folder))
    except (SourceError, OSError, ValueError) as e:
        st.info(f"GPT-2's tokenizer is not available here: {md_escape(e)}", icon=":material/info:")
        return None


def pieces(tokenizer, ids: list[int]) -> str:
    """Each token's text in brackets, with spaces and line breaks visible: `[Hello][␣world]`."""
    return "".join(f"[{shown_token(tokenizer.decode([i]))}]" for i in ids)


def two_tokenizers(tokenizer, name: str, gpt2, key: str) -> str:
    """The same text through the loaded model's tokenizer and GPT-2's, side by side (as text, never Markdown);
    returns the text."""
    text = st.text_input("A sentence", value=TOKENIZE_TEXT, key=f"{key}.tok_text", persist_state="session")
    columns = st.columns(2, gap="large")
    for col, (label, tok) in zip(columns, [(f"{name}'s tokenizer", tokenizer), ("GPT-2's tokenizer", gpt2)]):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with col:
            st.markdown(f"**{md_escape(label)}**: {len(tok):,} tokens in its vocabulary")
            st.metric("Tokens for this sentence", len(ids))
            st.code(pieces(tok, ids) or "(no tokens)", language=None, wrap_lines=True)
            st.caption("Their ids")
            st.code(str(ids), language=None, wrap_lines=True)
    return text


def vocab_sizes(model, tokenizer, name: str, gpt2) -> None:
    """The two vocabularies' sizes, what they cost in a model of this width, and padding to a multiple of 64."""
    from llmfs.vocab import padded_size
    width = model.config.n_embd if hasattr(model.config, "n_embd") else model.config.hidden_size
    rows = []
    for label, size in [(name, model.config.vocab_size), ("GPT-2", len(gpt2))]:
        padded = padded_size(size, 64)
        rows.append({"vocabulary": label, "tokens": f"{size:,}",
                     "padded to a multiple of 64": f"{padded:,}" + (f" (+{padded - size} unused rows)"
                                                                     if padded > size else " (already)"),
                     f"embedding rows × width {width:,}": f"{size * width:,} parameters"})
    st.dataframe(rows, hide_index=True, width="content")
    total = params_of(model)
    st.caption(f"GPT-2's 50,257 tokens are padded to 50,304 rows (nanoGPT's trick): matrix multiplications run "
               f"faster on sizes that are multiples of 64, and the extra rows are never predicted, so outputs do "
               f"not change. In a model as wide as {name} ({width:,}), GPT-2's vocabulary alone would take "
               f"{len(gpt2) * width:,} parameters: {len(gpt2) * width / total:.1f} × the whole model today.")


def swap_section(model, tokenizer, name: str, gpt2, text: str, key: str) -> None:
    """Moving the model to GPT-2's tokenizer: where each new row comes from, and what it does to the loss."""
    from llmfs.vocab import row_origins
    ids = gpt2(text, add_special_tokens=False)["input_ids"]
    rows = []
    for i, origin in zip(ids, row_origins(tokenizer, gpt2, ids)):
        start = {"matched": f"copied: {name}'s row of {pieces(tokenizer, list(origin.ids))}",
                 "subtokens": f"the average of {name}'s rows of {pieces(tokenizer, list(origin.ids))}",
                 "mean": f"the average of all {name}'s rows"}[origin.kind]
        rows.append({"GPT-2 token": shown_token(gpt2.decode([i])), "id": i, "its new row starts as": start})
    st.caption("The sentence's GPT-2 tokens, and where each one's new row would come from")
    st.dataframe(rows, hide_index=True, width="stretch", height=table_height(min(len(rows), 16)))
    wait = action_seconds("swap", params_of(model)) + 2
    if st.button("Swap and measure the loss", key=f"{key}.swap", icon=":material/swap_horiz:",
                 help=f"Builds the swapped copy of the model: {duration(wait)} on a 2-core CPU."):
        from llmfs.vocab import swap_tokenizer
        with st.spinner(f"Building a copy with GPT-2's {len(gpt2):,} rows ({duration(wait)}) ..."):
            swapped, report = swap_tokenizer(model, tokenizer, gpt2)
            st.session_state[f"{key}.swap_result"] = {
                "model": id(model), "report": report, "before": loss_per_character(model, tokenizer, HELDOUT_TEXT),
                "after": loss_per_character(swapped, gpt2, HELDOUT_TEXT)}
            del swapped
    res = st.session_state.get(f"{key}.swap_result")
    if not res or res["model"] != id(model):
        st.caption(f"The button builds the swapped model ({duration(wait)}): how many of GPT-2's "
                   f"{len(gpt2):,} rows are copied and how many averaged, and what the swap does to the loss.")
        return
    report = res["report"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Rows copied", f"{report.matched:,}",
              help=f"GPT-2 tokens that {name}'s vocabulary has too (same text): they keep their row bit for bit.")
    c2.metric("Rows from pieces", f"{report.from_subtokens:,}",
              help=f"The average of the rows of the pieces {name}'s tokenizer splits the token's text into.")
    c3.metric("Rows from the average", f"{report.from_mean:,}",
              help="Tokens whose text splits into nothing: the average of all the old rows.")
    c1, c2 = st.columns(2)
    c1.metric(f"Held-out loss with {name}'s own tokenizer", f"{res['before']:.2f}")
    c2.metric("After the swap, with GPT-2's", f"{res['after']:.2f}", delta=f"{res['after'] - res['before']:+.2f}",
              delta_color="inverse")
    what = ("Loss per character on a paragraph of Python's documentation (lower is better; per character, because "
            "the two tokenizers cut it into different numbers of tokens). ")
    if res["after"] - res["before"] < 0.05:
        st.caption(what + f"Almost no change: {report.matched / report.new_vocab_size:.0%} of GPT-2's tokens are in "
                   f"{name}'s vocabulary too (both are byte-level BPE vocabularies learned from English text), so "
                   "most rows are copied, the others start from pieces that spell the same text, and the sentence "
                   "is cut almost the same way.")
    else:
        st.caption(what + "Copied and averaged rows give the swapped model a start, not its old skill: its blocks "
                   "learned to read the old tokens, so it needs fine-tuning on GPT-2's tokens before it is as good "
                   "again.")


def loss_per_character(model, tokenizer, text: str) -> float:
    """The summed next-token loss of `model` on `text` divided by the characters it predicted: comparable across
    tokenizers that cut the text differently."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: model.config.n_positions]
    predicted = len(tokenizer.decode(ids[1:]))
    return heldout_loss(model, tokenizer, text) * (len(ids) - 1) / max(1, predicted)


def heldout_loss(model, tokenizer, text: str) -> float:
    """Mean next-token loss of `model` on `text` (cut to its context)."""
    import torch
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, : model.config.n_positions]
    with torch.no_grad():
        _, loss = model(ids[:, :-1], ids[:, 1:])
    return float(loss)


def vocabulary(model, tokenizer, source: str, key: str) -> None:
    """The vocabulary tab: two tokenizers on one sentence, sizes and padding, a tokenizer swap, adding tokens."""
    name = choices.model_name(source)
    gpt2 = load_gpt2_tokenizer()
    st.subheader("One sentence, two tokenizers")
    st.markdown(f"A model only ever sees token ids, and each id means something only to the tokenizer it was "
                f"trained with. Below, the same sentence as **{md_escape(name)}** reads it and as **GPT-2** reads "
                "it (GPT-2's own byte-pair encoding, 50,257 tokens, read offline from the file the openai-whisper "
                "package ships).")
    text = TOKENIZE_TEXT
    if gpt2 is not None:
        text = two_tokenizers(tokenizer, name, gpt2, key)
        st.subheader("Vocabulary size and padding")
        vocab_sizes(model, tokenizer, name, gpt2)
        st.subheader("Swapping the tokenizer")
        st.markdown(f"Give **{md_escape(name)}** GPT-2's tokenizer and its embedding table (and head) needs one "
                    "row per GPT-2 token. Rows of tokens both vocabularies share are copied; every other row "
                    "starts at the average of the rows of the pieces the old tokenizer splits its text into "
                    "(Fast Vocabulary Transfer, Gee et al. 2022). The blocks stay as they are.")
        swap_section(model, tokenizer, name, gpt2, text, key)
    st.subheader("Adding tokens")
    st.markdown("A tokenizer that lacks your domain's words splits them into many pieces. **Adding tokens** gives "
                "them rows of their own in the embedding table (and the output head); starting each new row from "
                "the average of the pieces it used to be split into gives it a sensible meaning from step one. "
                "Old tokens must not change at all.")
    add_tokens_section(model, tokenizer, source, key)


def add_tokens_section(model, tokenizer, source: str, key: str) -> None:
    from llmfs.vocab import add_tokens, padded_size
    words = st.text_input("New tokens (comma-separated)", value="dataclass, asyncio.gather, <|user|>",
                          key=f"{key}.vocab_words",
                          persist_state="session", help="Words or special markers to give their own token.")
    init = st.radio("Start the new rows from", ["subtoken_mean", "mean"], horizontal=True, key=f"{key}.vocab_init",
                    persist_state="session",
                    format_func={"subtoken_mean": "the average of the pieces the word used to be split into",
                                 "mean": "the average of all embeddings"}.get)
    special = st.checkbox("Add them as special tokens", key=f"{key}.vocab_special", persist_state="session",
                          help="Special tokens (like chat markers <|user|>) are never split and never merged with "
                               "the text around them.")
    new = [w.strip() for w in words.split(",") if w.strip()]
    if not new:
        return
    # A copy of a 135M model per rerun would make every click on the page slow: the figures are kept per input.
    inputs = (id(model), tuple(new), init, special)
    memo = st.session_state.get(f"{key}.vocab_memo")
    if not memo or memo["inputs"] != inputs:
        bigger, _, report = add_tokens(model, tokenizer, new, special=special, init=init)
        memo = {"inputs": inputs, "report": report, "change": _old_logit_change(model, bigger, tokenizer)}
        del bigger
        st.session_state[f"{key}.vocab_memo"] = memo
    report = memo["report"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Vocabulary before", f"{report.old_vocab_size:,}")
    c2.metric("Vocabulary after", f"{report.new_vocab_size:,}", delta=len(report.tokens))
    c3.metric("Old tokens' logits changed by", f"{memo['change']:.1e}",
              help="Resizing adds rows; every existing token's score must stay exactly as it was.")
    st.dataframe([{"new token": shown_token(t), "id": i,
                   "was split into": " ".join(f"[{shown_token(p)}]" for p in report.splits.get(t, ()))}
                  for t, i in zip(report.tokens, report.ids)], hide_index=True)
    if report.skipped:
        st.caption(f"Already in the vocabulary (skipped): {md_escape(', '.join(map(shown_token, report.skipped)))}")
    rows = padded_size(report.new_vocab_size, 64)
    if is_llama(model):
        st.caption(f"Padding for speed would give {rows:,} rows (a multiple of 64); this lab pads only its GPT, and "
                   "saves the vocabulary as it is.")
    else:
        st.caption(f"Padding for speed: {report.new_vocab_size:,} rows -> {rows:,} (a multiple of 64, which matrix "
                   "multiplications handle faster); the padding rows are never predicted, so outputs do not "
                   "change. A saved folder leaves them out (transformers' GPT-2 has no padding rows).")
    default_name = f"{SAFE_NAME.sub('_', choices.model_name(source)).lstrip('.') or 'model'}-plus"
    name = st.text_input("Save as a model folder named", value=default_name, key=f"{key}.save_name",
                         persist_state="session")
    if st.button("Save it for fine-tuning", key=f"{key}.save", icon=":material/save:"):
        from llmfs.weights import save_hf_folder
        with st.spinner("Saving ..."):
            bigger, new_tok, _ = add_tokens(model, tokenizer, new, special=special, init=init)
            folder = save_hf_folder(bigger, models_dir(identity.workshop_user()) /
                                    (SAFE_NAME.sub("_", name).lstrip(".") or "model"), tokenizer=new_tok)
        if identity.shows_paths():
            st.success(f"Saved to {md_escape(folder)}. Pick it as **A folder on this machine** under Fine-tune.")
        else:  # a participant: the folder is theirs, its path the server's
            st.success(f"Saved as **{md_escape(folder.name)}** among your models.")


def _old_logit_change(old, new, tokenizer) -> float:
    import torch
    ids = torch.tensor([tokenizer("def read(path): return open(path).read()")["input_ids"]])
    with torch.no_grad():
        return (old(ids)[0] - new(ids)[0][..., : old.config.vocab_size]).abs().max().item()


# -- 5 · pretrained vs random, before any training -------------------------------------------------------------------
def before_training(model, tokenizer, source: str, key: str) -> None:
    """The pretrained weights and random ones of the same architecture: the held-out loss and a greedy answer."""
    params = params_of(model)
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    wait = action_seconds("random", params) + 2 * action_seconds("token", params, ASK_TOKENS)
    if st.button("Ask both", key=f"{key}.both_ask", icon=":material/psychology:",
                 help=f"Draws random weights and generates twice: {duration(wait)} on a 2-core CPU."):
        text = prompt_text(tokenizer, ASK_PROMPT, has_chat)
        with st.spinner(f"Drawing random weights and asking both ({duration(wait)}) ..."):
            rand = random_twin(source)
            st.session_state[f"{key}.both_result"] = {
                "model": id(model), "text": text,
                "rows": [{"weights": label, "loss": heldout_loss(m, tokenizer, HELDOUT_TEXT),
                          "answer": greedy_answer(m, tokenizer, text)}
                         for label, m in [("pretrained", model), ("random", rand)]]}
    res = st.session_state.get(f"{key}.both_result")
    if not res or res["model"] != id(model):
        st.caption(f"{'Asks' if has_chat else 'Gives'} both “{ASK_PROMPT}” and measures their loss on a paragraph "
                   f"neither trained on: {duration(wait)} on a 2-core CPU.")
        return
    for col, row in zip(st.columns(2, gap="large"), res["rows"]):
        with col:
            st.metric(f"Held-out loss, {row['weights']} weights", f"{row['loss']:.2f}")
            st.caption(f"Its answer to “{ASK_PROMPT}” (through the chat template)" if has_chat else
                       f"How it continues “{ASK_PROMPT}”")
            st.code(row["answer"] or "(nothing: it ended at once)", language=None, wrap_lines=True)
    import math
    st.caption(f"Random weights know nothing: their loss is near ln({model.config.vocab_size:,}) = "
               f"{math.log(model.config.vocab_size):.1f}, a uniform guess over the vocabulary, and their text makes "
               "no sense. Everything the pretrained model does better, it learned in pretraining.")


def layer_map(model, key: str) -> dict:
    """Strategy controls, the layer map and the memory estimate; returns the TrainConfig fields chosen."""
    cfg = forms.config_form(TrainConfig, key=f"{key}.freeze",
                            fields=["freeze", "freeze_layers", "unfreeze_every", "layer_lr_decay"])
    if cfg is None:
        return {}
    st.caption(f"**{cfg.freeze}**: {md_escape(STRATEGIES[cfg.freeze])}")
    plan = plan_freeze(model, cfg.freeze, n_layers=cfg.freeze_layers, unfreeze_every=cfg.unfreeze_every,
                       lr_decay=cfg.layer_lr_decay)
    groups = plan.groups()
    colors = {"trains": "#2f9e44", "partly trains": "#f08c00", "frozen": "#adb5bd"}
    labels = [_group_label(g) for g in groups]
    fig = go.Figure(go.Bar(x=[g["params"] for g in groups], y=labels, orientation="h",
                           marker_color=[colors.get(g["status"], "#adb5bd") for g in groups],
                           text=[g["status"] for g in groups], textposition="auto"))
    fig.update_layout(height=max(300, 80 + 18 * len(groups)), margin=dict(l=10, r=10, t=30, b=10),
                      yaxis=dict(autorange="reversed"),
                      title="Layer map: green trains, grey is frozen", xaxis_title="parameters")
    st.plotly_chart(fig, width="stretch")
    c1, c2 = st.columns(2)
    c1.metric("Parameters that train", f"{plan.trainable_params:,}",
              help=f"{plan.trainable_params / plan.total_params:.1%} of all {plan.total_params:,} parameters.")
    shape = train_shape(key)
    try:
        est = memory.estimate(memory_config(model), freeze=plan, **shape)
    except ValueError as e:
        st.caption(f"No memory estimate: {md_escape(e)}")
    else:
        c2.metric("Memory for training", charts.fmt_bytes(est.total_bytes),
                  help="Weights; gradients and AdamW's two running averages for what trains; and the activations "
                       "the forward pass keeps for backward, which a frozen bottom also spares.")
        st.plotly_chart(memory_parts_figure(est, shape), width="stretch")
    for note in plan.notes:
        st.caption(note)
    with st.expander("Every strategy on this model"):
        st.table(strategy_rows(model, cfg), hide_index=True)
        st.caption("Parameters that train at some point of the run (gradual: once every block is unfrozen; a head "
                   "untied from the embeddings counts as its own copy), with Blocks, K and the decay set above.")
    return {"freeze": cfg.freeze, "freeze_layers": cfg.freeze_layers, "unfreeze_every": cfg.unfreeze_every,
            "layer_lr_decay": cfg.layer_lr_decay}


def memory_config(model):
    """What `memory.estimate` reads for `model`: our GPT's config, or a Llama's config.json dict."""
    return model.config.to_hf_dict() if is_llama(model) else model.config


def strategy_rows(model, cfg: TrainConfig) -> list[dict]:
    """One row per freezing strategy on `model`: what it trains and how much of the model that is (Markdown-escaped:
    `st.table` reads its cells as Markdown)."""
    rows = []
    for strategy, what in STRATEGIES.items():
        try:
            plan = plan_freeze(model, strategy, n_layers=cfg.freeze_layers, unfreeze_every=cfg.unfreeze_every,
                               lr_decay=cfg.layer_lr_decay)
        except ValueError as e:
            rows.append({"strategy": md_escape(strategy), "parameters that train": "-", "share": "-",
                         "what trains": md_escape(e)})
            continue
        rows.append({"strategy": md_escape(strategy), "parameters that train": f"{plan.trainable_params:,}",
                     "share": f"{plan.trainable_params / plan.total_params:.1%}", "what trains": md_escape(what)})
    return rows


def train_shape(key: str) -> dict:
    """Batch, sequence length and precision as the fine-tune form of step 4 holds them (its defaults before it has
    been shown): what the memory estimate of the layer map is for."""
    default = TrainConfig()
    return {"batch_size": int(st.session_state.get(f"{key}.batch_size") or default.batch_size),
            "seq_len": int(st.session_state.get(f"{key}.seq_len") or default.seq_len),
            "precision": str(st.session_state.get(f"{key}.precision") or default.precision)}


def memory_parts_figure(est: memory.Estimate, shape: dict) -> go.Figure:
    parts = {part: getattr(est, field) for field, part in charts.TENSOR_PARTS.items()}
    fig = go.Figure(go.Bar(x=list(parts.values()), y=list(parts), orientation="h",
                           marker_color=[charts.TENSOR_COLORS[p] for p in parts],
                           text=[charts.fmt_bytes(v) for v in parts.values()], textposition="auto"))
    fig.update_layout(height=200, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(autorange="reversed"),
                      xaxis_title=f"bytes ({shape['precision']}, batches of {shape['batch_size']} × "
                                  f"{shape['seq_len']} tokens as step 4 sets them)")
    return fig


def _group_label(g: dict) -> str:
    label = g["group"] + (" (shares the embeddings)" if g.get("tied") else "")
    if (g.get("start_step") or 1) > 1:
        label += f" (from step {g['start_step']})"
    if (g.get("lr_scale") or 1) != 1:
        label += f" x{g['lr_scale']:.2f} lr"
    return label


def freeze_note(freeze: dict, where: str = "step 3 · What trains") -> None:
    """Say, in the form that uses it, which layers will train, and `where` that was chosen."""
    strategy = freeze.get("freeze") or "full"
    what = STRATEGIES.get(strategy, strategy)
    if strategy in ("freeze_bottom", "train_top"):
        what += f" (Blocks: {freeze.get('freeze_layers')})"
    st.info(f"**Which layers train** (set in {where}): **{strategy}**: {what}",
            icon=":material/ac_unit:" if strategy != "full" else ":material/layers:")


def random_freeze_warning(freeze: dict) -> None:
    """The comparison's random-weights run keeps what is frozen at its random values: say so before it starts."""
    strategy = freeze.get("freeze") or "full"
    if strategy not in ("full", "llrd"):
        st.warning(f"Step 3 freezes part of the model (**{strategy}**): in the run from random weights the frozen "
                   "layers stay random (with `gradual`, until their turn comes), so it cannot learn as a full "
                   "fine-tune would. Choose **full** in step 3 to compare the weights alone.",
                   icon=":material/ac_unit:")


def pair_time(cfg: TrainConfig) -> None:
    """The expected time of the two runs together (forms.expected_time counts one run per entry of `modes`), and
    what to change when that is longer than a lesson."""
    import dataclasses
    import types

    from llmfs.architecture import config_of
    from llmfs.timing import estimate_train
    from llmfs.train import resolve_device
    shape = config_of(cfg.model)
    if shape is None:   # a hub id not downloaded yet: no estimate before the run
        return
    forms.expected_time(types.SimpleNamespace(**dataclasses.asdict(cfg), modes=("pretrained", "random")))
    st.caption("That is for the two runs together, one after the other.")
    try:
        seconds = 2 * estimate_train(cfg, shape, device=resolve_device(cfg.device)).seconds
    except (ValueError, OSError, RuntimeError):
        return
    if seconds > LONG_PAIR_S:
        st.info("Too long to wait for in a lesson: fewer steps, a smaller batch or shorter sequences in step 4 bring "
                "it down (for smollm2-135m, step 4's **Use quick settings for this CPU** does it in one click).",
                icon=":material/timer:")


LONG_PAIR_S = 20 * 60


def submit_comparison(key: str, cfg: TrainConfig, name: str = "") -> None:
    """Queue the same fine-tune twice, from pretrained and from random weights; remember both for the overlay
    (named `name · pretrained weights` and `name · random weights` when a name was typed)."""
    from llmfs.recipes import preflight_train
    try:
        configs = [cfg.replace(init=init, save_model=False) for init in ("pretrained", "random")]
        for c in configs:
            state.jobs().admit("train", c)  # the workshop's rules first: a refused path is never opened
            preflight_train(c)
        ids = state.jobs().submit_batch([("train", c) for c in configs], owner=key)  # both or neither
    except (ValueError, OSError) as e:
        st.error(md_escape(e), icon=":material/error:")
        return
    run_panels.name_runs(ids, name, f"{key}.both")
    st.session_state[f"{key}.compare"] = ids
    for rid in ids:
        state.remember(key, rid)
    time.sleep(0.1)
    st.rerun()


def samples(run_id: str | None) -> None:
    """Text generated before and after fine-tuning, side by side (same prompts, same seed)."""
    if not run_id:
        return
    status = state.jobs().get(run_id).status()
    result = status.get("result") or {}
    if not result.get("samples"):
        st.caption("When the run finishes, text generated before and after training appears here.")
        return
    if not identity.may_see_texts(status.get("user")):
        panels.withheld()
        return
    for s in result["samples"]:
        st.caption("Prompt")
        st.code(s["prompt"], language=None, wrap_lines=True)  # the data's own text: never read as Markdown
        before, after = st.columns(2)
        before.text_area("Before training", s["before"], height=140, disabled=True, key=f"{run_id}.{s['prompt']}.b",
                         persist_state="session")
        after.text_area("After training", s["after"], height=140, disabled=True, key=f"{run_id}.{s['prompt']}.a",
                        persist_state="session")
