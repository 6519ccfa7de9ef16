"""Streaming readers: `Document`s from text, JSONL, Parquet, WebDataset shards and Hugging Face streams.

Memory is bounded by one record, never by the file: text and JSONL are read line by line in binary (so a byte
offset can be stored and sought on resume), Parquet record batch by record batch, tar shards as a stream (a local
file, or http(s) / s3 / gs through fsspec), Hugging Face datasets with `streaming=True`.

Nothing named in a spec is ever executed: every location, after braces are expanded, is a path or an address with a
scheme in `SCHEMES` (`check_location`); `pipe:` (which webdataset's `gopen` would run as a shell command) and every
other scheme are refused, in any letter case, before anything is opened.

Specs understood by `read_documents` / `DocumentReader`:
  llmfs-corpus[@heldout]        the embedded default's shards (`require_default().corpus_train`, or its held-out split)
  hf:NAME[:CONFIG][@SPLIT]      a hub dataset (fails at once when the hub is unreachable); for the local builders
                                json / parquet / text / csv, CONFIG is the data files: `hf:json:data/*.jsonl`
  a file                        .txt .md .rst .text, .jsonl .json (JSON Lines), .parquet, .tar .tar.gz .tgz
  a folder                      its files of those kinds, recursively, sorted (.json left out: a folder's stats.json
                                is not JSON Lines)
  a glob or brace pattern / URL `data/*.jsonl`, `shards/shard-{000..099}.tar`, `https://host/shard-{0..9}.tar`

Ids: a record's `id` field if it has one, else `<file>:<line>` (JSONL, text paragraphs), `<file>:<row>` (Parquet,
1-based), `<file>:<key>` (tar), `<file>` (a whole text file); `<file>` is the path relative to the folder or pattern.
A string `source` field is the document's source (else the file); the other fields go into `metadata` (a
`metadata` object is merged in, as datatrove's adapter does).
"""

from __future__ import annotations

import glob
import ipaddress
import json
import os
import re
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from ..config import DEFAULT_DATA, PYTHON_QA
from ..defaults import require_default
from ..errors import DataError
from ..hub import hub_unreachable_reason
from .documents import Document, ReadError

HF_PREFIX = "hf:"
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")
JSONL_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
FOLDER_SUFFIXES = TEXT_SUFFIXES + (".jsonl",) + PARQUET_SUFFIXES + TAR_SUFFIXES
HF_LOCAL_BUILDERS = ("json", "parquet", "text", "csv")  # `datasets` builders that read local files, no hub needed
HELDOUT = "@heldout"
# The only schemes a location may have. Object stores go through fsspec (s3fs, gcsfs, adlfs), http(s) through
# fsspec's aiohttp filesystem; nothing is handed to a shell or to webdataset's `gopen` (whose `pipe:` runs commands).
OBJECT_STORES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
SCHEMES = ("http", "https", *OBJECT_STORES)
_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*):")
# Set (by `llmfs.workshop.install`) in a workshop server's environment, which its jobs inherit: http(s) reads then
# connect only to public addresses, checked on every connection (redirects and DNS changes included).
PUBLIC_ONLY_ENV = "LLMFS_PUBLIC_URLS_ONLY"


def scheme_of(location: str) -> str | None:
    """The scheme of `location` in lower case (`pipe:cmd` -> "pipe", `S3://b/k` -> "s3"), None for a path."""
    m = _SCHEME.match(str(location))
    return m[1].lower() if m else None


def check_location(location: str) -> None:
    """Refuse a location that is neither a path nor an address this project reads (`SCHEMES`, with `//`).

    Raises:
        DataError: naming the scheme and what is accepted; `pipe:` is called out (it would run a command).
    """
    scheme = scheme_of(location)
    if scheme is None:
        return
    rest = str(location).strip()[len(scheme) + 1:]
    if scheme in SCHEMES and rest.startswith("//"):
        return
    shown = str(location).strip()
    shown = shown if len(shown) <= 80 else shown[:79] + "…"
    if scheme == "hf":
        raise DataError(f"{shown!r}: write hf: in lower case (hf:NAME, or hf:json:<files> for local JSON Lines).")
    if scheme == "pipe":
        raise DataError(f"{shown!r}: 'pipe:' sources are refused: llmfs never runs a command to read data. Give a "
                        "file, a folder, a shard pattern, or an http(s):// / s3:// / gs:// address.")
    raise DataError(f"{shown!r}: cannot read '{scheme}:' sources. Give a file or folder on this machine (a name with "
                    "a colon: write it as ./name), a shard pattern, or an http(s):// / s3:// / gs:// address.")


ErrorMode = Literal["skip", "raise"]
OnError = Callable[[ReadError], None]


@dataclass
class ReaderState:
    """Where a reader stands: after the document `last_id`. JSON-serialisable (`to_dict` / `from_dict`), so a
    pipeline can store it beside its output and continue later with `start_after=state`."""
    file_index: int = 0        # index into the spec's sorted inputs
    file: str = ""             # that input's path / URL, checked on resume so a changed folder is noticed
    offset: int = 0            # byte offset where reading continues (JSONL, text paragraphs); 0 where no seek
    records: int = 0           # records consumed in this input: lines, rows, tar samples, hf rows; 1 for a text file
    last_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ReaderState:
        return cls(**d)


@dataclass(frozen=True)
class _Input:
    kind: str       # text | jsonl | parquet | tar | hf
    location: str   # path, URL or hf: spec
    name: str       # the `<file>` part of ids


def read_documents(spec: str | os.PathLike, *, errors: ErrorMode = "skip", on_error: OnError | None = None,
                   start_after: str | ReaderState | dict | None = None, **options: Any) -> Iterator[Document]:
    """Stream the documents of `spec` (see the module docstring); `DocumentReader` is the same with `.state`.

    Args:
        errors: "skip" reports a bad record (broken JSON line, invalid UTF-8, missing text field, truncated tar) and
            goes on; "raise" raises `DataError` (a ValueError) naming the file and the line / member / row.
        on_error: called with a `ReadError(source, location, reason)` for each bad record, in both modes.
        start_after: continue after a document id (re-reads up to it) or a `ReaderState` / its dict (seeks).
        options: `text_key="text"`, `id_key="id"`, `paragraphs=False` (text files: one document per blank-line
            separated block), `batch_size=1024` (Parquet rows per batch).
    Raises:
        DataError: no such data, an unknown suffix, the hub unreachable for `hf:NAME`, a bad record with
            errors="raise", or a `start_after` id never seen.
    """
    yield from DocumentReader(spec, errors=errors, on_error=on_error, start_after=start_after, **options)


class DocumentReader:
    """Iterable over a spec's documents; `.state` is the position after the last one yielded, `.error_count` the
    bad records reported. Iterating again continues from `.state`."""

    def __init__(self, spec: str | os.PathLike, *, errors: ErrorMode = "skip", on_error: OnError | None = None,
                 start_after: str | ReaderState | dict | None = None, text_key: str = "text", id_key: str = "id",
                 paragraphs: bool = False, batch_size: int = 1024):
        if errors not in ("skip", "raise"):
            raise ValueError(f'errors must be "skip" or "raise", got {errors!r}')
        self.spec, self.errors, self.on_error = os.fspath(spec), errors, on_error
        self.text_key, self.id_key, self.paragraphs, self.batch_size = text_key, id_key, paragraphs, batch_size
        self.inputs = resolve_inputs(self.spec)
        self.state, self._skip_to = ReaderState(), None
        if isinstance(start_after, str):
            self._skip_to = start_after
        elif start_after is not None:
            self.state = start_after if isinstance(start_after, ReaderState) else ReaderState.from_dict(start_after)
        self.error_count = 0

    def __iter__(self) -> Iterator[Document]:
        start = self.state
        names = [inp.location for inp in self.inputs]
        if start.file and (start.file_index >= len(names) or names[start.file_index] != start.file):
            raise DataError(f"{self.spec}: cannot resume at {start.file!r} (input {start.file_index}): the inputs "
                            "changed since the state was saved.")
        for index in range(start.file_index, len(self.inputs)):
            inp = self.inputs[index]
            offset, records = (start.offset, start.records) if index == start.file_index else (0, 0)
            for doc, offset, records in getattr(self, f"_read_{inp.kind}")(inp, offset, records):
                self.state = ReaderState(index, inp.location, offset, records, doc.id)
                if self._skip_to is not None:
                    if doc.id == self._skip_to:
                        self._skip_to = None
                    continue
                yield doc
        if self._skip_to is not None:
            raise DataError(f"{self.spec}: start_after={self._skip_to!r}, but no document has that id.")

    # -- errors ------------------------------------------------------------------------------------------------
    def _report(self, source: str, location: str, reason: str) -> None:
        self.error_count += 1
        if self.on_error is not None:
            self.on_error(ReadError(source, location, reason))
        if self.errors == "raise":
            raise DataError(f"{source}, {location}: {reason}")

    def _open(self, inp: _Input):
        try:
            return open(inp.location, "rb")
        except OSError as e:
            self._report(inp.location, "open", f"cannot open ({e.strerror or e})")
            return None

    def _adapt(self, obj: Any, inp: _Input, default_id: str, location: str) -> Document | None:
        """A record (JSON object, Parquet or hf row) -> Document; None (reported) without a text field."""
        if not isinstance(obj, dict):
            self._report(inp.location, location, f"expected a JSON object, got {type(obj).__name__}")
            return None
        fields = dict(obj)
        text = fields.pop(self.text_key, None)
        if not isinstance(text, str):
            self._report(inp.location, location, f'no "{self.text_key}" text field (fields: {", ".join(obj)})')
            return None
        return self._document(text, fields, inp, default_id)

    def _document(self, text: str, fields: dict, inp: _Input, default_id: str) -> Document:
        # As datatrove's default adapter: the id field, else the position; every other field into metadata, merged
        # over a `metadata` object. A string `source` field (what ShardWriter writes) is the document's source.
        doc_id = fields.pop(self.id_key, None)
        source = fields.pop("source") if isinstance(fields.get("source"), str) else inp.location
        if isinstance(fields.get("metadata"), dict):
            fields = {**fields.pop("metadata"), **fields}
        return Document(text, str(doc_id) if doc_id is not None else default_id, source, fields)

    # -- formats: each yields (document, offset, records) with the position just after the document ------------
    def _read_jsonl(self, inp: _Input, offset: int, line: int):
        if (f := self._open(inp)) is None:
            return
        with f:
            f.seek(offset)
            for raw in f:  # a buffered binary file yields one line at a time
                offset, line = offset + len(raw), line + 1
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.rstrip(b"\r\n").decode("utf-8"))  # an unclosed string: not "control char"
                except UnicodeDecodeError as e:
                    self._report(inp.location, f"line {line}", f"invalid UTF-8 at byte {offset - len(raw) + e.start}")
                    continue
                except json.JSONDecodeError as e:
                    self._report(inp.location, f"line {line}", f"not valid JSON ({e.msg}, column {e.colno})")
                    continue
                if (doc := self._adapt(obj, inp, f"{inp.name}:{line}", f"line {line}")) is not None:
                    yield doc, offset, line

    def _read_text(self, inp: _Input, offset: int, records: int):
        if self.paragraphs:
            yield from self._read_paragraphs(inp, offset, records)
            return
        if records or (f := self._open(inp)) is None:  # records == 1: this file's one document was read already
            return
        with f:
            data = f.read()  # the file is one document, so it is held whole once; paragraphs=True streams instead
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            self._report(inp.location, f"byte {e.start}", "invalid UTF-8; the file is skipped")
            return
        yield Document(text, inp.name, inp.location), len(data), 1

    def _read_paragraphs(self, inp: _Input, offset: int, line: int):
        if (f := self._open(inp)) is None:
            return
        with f:
            f.seek(offset)
            lines: list[str] = []
            start, bad = 0, False
            for raw in f:
                offset, line = offset + len(raw), line + 1
                if not raw.strip():  # a blank line ends the block
                    if lines and not bad:
                        yield Document("".join(lines).rstrip("\r\n"), f"{inp.name}:{start}", inp.location), offset, line
                    lines, bad = [], False
                    continue
                if not lines and not bad:
                    start = line
                try:
                    lines.append(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    where = offset - len(raw) + e.start
                    self._report(inp.location, f"line {line}", f"invalid UTF-8 at byte {where}; paragraph skipped")
                    bad = True
            if lines and not bad:
                yield Document("".join(lines).rstrip("\r\n"), f"{inp.name}:{start}", inp.location), offset, line

    def _read_parquet(self, inp: _Input, offset: int, records: int):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(inp.location)
        except (OSError, pa.ArrowException) as e:
            self._report(inp.location, "open", f"not a readable Parquet file ({e})")
            return
        names = pf.schema_arrow.names
        if self.text_key not in names:
            self._report(inp.location, f"column {self.text_key}", f"no such column (columns: {', '.join(names)})")
            return
        groups, row = [], 0
        for i in range(pf.num_row_groups):  # resume: row groups wholly consumed are not read at all
            n = pf.metadata.row_group(i).num_rows
            if not groups and row + n <= records:
                row += n
            else:
                groups.append(i)
        if not groups:
            return
        try:
            for batch in pf.iter_batches(batch_size=self.batch_size, row_groups=groups):
                for obj in batch.to_pylist():
                    row += 1
                    if row > records and (doc := self._adapt(obj, inp, f"{inp.name}:{row}", f"row {row}")):
                        yield doc, 0, row
        except (OSError, pa.ArrowException) as e:
            self._report(inp.location, f"row {row + 1}", f"corrupt Parquet data ({e})")

    def _read_tar(self, inp: _Input, offset: int, records: int):
        # webdataset's own pipeline hands its error handler an exception without the member name and cannot start
        # mid-shard, so the members are walked here; `base_plus_ext` (key = name up to the first dot) is
        # webdataset's, so samples group exactly as `wds.WebDataset` groups them. The shard is opened by
        # `open_stream`, never by webdataset's `gopen` (which runs `pipe:` commands).
        from webdataset.tariterators import base_plus_ext

        try:
            stream = open_stream(inp.location)
        except DataError:
            raise  # a refused location (pipe:, an unknown scheme) is not a bad record to skip
        except Exception as e:  # OSError, fsspec's and aiohttp's errors, ...
            cause = e  # fsspec says only "not found" and aiohttp "cannot connect": the reason is the first cause
            while cause.__cause__ is not None or cause.__context__ is not None:
                cause = cause.__cause__ or cause.__context__
            why = f"{e}: {cause}" if cause is not e and str(cause) not in str(e) else str(e)
            self._report(inp.location, "open", f"cannot open ({why})")
            return
        key, sample, n, member, finished = None, {}, 0, "the first member", False
        counted = _CountingReader(stream)
        try:
            with tarfile.open(fileobj=counted, mode="r|*") as tar:
                for info in tar:
                    member = info.name
                    name_key, suffix = base_plus_ext(info.name)
                    if not info.isreg() or name_key is None:
                        continue
                    if name_key != key:  # a new key begins: the previous sample is whole
                        if key is not None and (n := n + 1) > records:
                            yield from self._tar_document(inp, key, sample, n)
                        key, sample = name_key, {}
                    sample[suffix.lower()] = tar.extractfile(info).read()
                # tarfile takes end-of-file at a member boundary for the end of the archive; the end-of-archive
                # blocks (zeros after the last member) tell a complete shard from one cut there.
                if tar.fileobj.comptype == "tar" and counted.bytes_read < tar.offset + tarfile.BLOCKSIZE:
                    raise tarfile.ReadError(f"the archive ends at byte {counted.bytes_read}, without end-of-archive")
            if key is not None and (n := n + 1) > records:
                yield from self._tar_document(inp, key, sample, n)
            finished = True
        except (tarfile.TarError, EOFError, OSError) as e:
            lost = f"; sample {key} dropped" if key is not None else ""
            self._report(inp.location, f"member {member}", f"truncated or corrupt tar ({e}){lost}")
        finally:
            try:
                stream.close()
            except OSError as e:
                if finished:  # else already reported, or the consumer stopped early
                    self._report(inp.location, "end", f"the download failed ({e})")

    def _tar_document(self, inp: _Input, key: str, sample: dict, n: int):
        where = f"member {key}.txt"
        if "txt" not in sample:
            self._report(inp.location, where, f"no .txt member (members: {', '.join(sorted(sample))})")
            return
        try:
            text = sample["txt"].decode("utf-8")
            meta = json.loads(sample["json"].decode("utf-8")) if "json" in sample else {}
        except UnicodeDecodeError as e:
            self._report(inp.location, where, f"invalid UTF-8 at byte {e.start}")
            return
        except json.JSONDecodeError as e:
            self._report(inp.location, f"member {key}.json", f"not valid JSON ({e.msg})")
            return
        fields = dict(meta) if isinstance(meta, dict) else {"json": meta}
        yield self._document(text, fields, inp, f"{inp.name}:{key}"), 0, n

    def _read_hf(self, inp: _Input, offset: int, records: int):
        stream = _open_hf(inp.location)  # a hub that cannot be reached raises here: not a bad record
        if records:
            stream = stream.skip(records)
        rows, row = iter(stream), records
        while True:
            try:
                obj = next(rows)
            except StopIteration:
                return
            except Exception as e:
                # A stream cannot continue after its reader failed: report and end it. `datasets` parses JSON in
                # blocks, so one broken line loses its whole block; a plain path skips just the line.
                first = str(e).splitlines()[0][:300] if str(e) else ""
                self._report(inp.location, f"after record {row}", f"{type(e).__name__}: {first}; the stream ends")
                return
            row += 1
            if (doc := self._adapt(obj, inp, f"{inp.name}:{row}", f"record {row}")) is not None:
                yield doc, 0, row


class _CountingReader:
    """A read-only stream that counts the bytes read through it."""

    def __init__(self, raw):
        self.raw, self.bytes_read = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bytes_read += len(data)
        return data


def parse_hf(spec: str) -> tuple[str, str, str]:
    """(name, config, split) of `hf:NAME[:CONFIG][@SPLIT]`. For the local builders (json, parquet, text, csv) CONFIG
    is a data-files location, checked like any other (`check_location`: no `pipe:`, no unknown scheme)."""
    body = spec.strip()[len(HF_PREFIX):]
    head, at, split = body.rpartition("@")
    if not at or "/" in split:  # an @ inside a path is not a split
        head, split = body, ""
    name, _, config = head.partition(":")
    if name in HF_LOCAL_BUILDERS and config:
        check_location(config)
    return name, config, split


def _open_hf(spec: str):
    """A `datasets.IterableDataset` for `hf:NAME[:CONFIG][@SPLIT]`."""
    name, config, split = parse_hf(spec)
    if not name:
        raise DataError(f"{spec!r}: give a dataset after hf:, e.g. hf:wikitext:wikitext-2-raw-v1 or hf:json:a.jsonl")
    import datasets

    local = name in HF_LOCAL_BUILDERS and config
    if local and scheme_of(config) is None and not glob.glob(os.path.expanduser(config), recursive=True):
        raise DataError(f"{spec}: no files match {config}.")  # datasets itself says only "StopIteration"
    if not local:
        if reason := hub_unreachable_reason():
            raise DataError(f"Cannot stream the dataset {name!r} from the Hugging Face hub: {reason}. Use "
                            "llmfs-corpus, a local file or folder, or hf:json:<files> for local JSON Lines.")
    try:
        if local:
            return datasets.load_dataset(name, data_files=config, split=split or "train", streaming=True)
        return datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
    except Exception as e:  # FileNotFoundError, DatasetNotFoundError, ...: the message is the library's
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise DataError(f"Could not open the dataset {name!r}: {type(e).__name__}: {first}") from e


def open_stream(location: str):
    """A binary stream of a shard: a local file with `open`, object storage (s3://, gs://, az://) and http(s)
    through fsspec. Anything else is refused (`check_location`): nothing is ever run to read data."""
    check_location(location)
    scheme = scheme_of(location)
    if scheme is None:
        return open(os.path.expanduser(location), "rb")
    import fsspec
    if scheme in ("http", "https"):
        # block_size=0: a plain stream (a tar is read front to back), no range requests or size probe needed
        options = {"get_client": _public_client} if os.environ.get(PUBLIC_ONLY_ENV) == "1" else {}
        return fsspec.open(location, "rb", block_size=0, **options).open()
    try:
        return fsspec.open(location, "rb").open()
    except ImportError as e:
        raise DataError(f"Reading {scheme}:// needs the {OBJECT_STORES[scheme]} package: pip install "
                        f"{OBJECT_STORES[scheme]} (credentials as that library reads them: environment or "
                        "config files).") from e


async def _public_client(**kwargs):
    """fsspec's aiohttp session, whose connector refuses loopback, private and link-local addresses at every
    connection: an address typed as a number, a name resolving to one, a redirect to one, a name re-resolving."""
    import aiohttp

    class PublicConnector(aiohttp.TCPConnector):
        # `_resolve_host` is where aiohttp turns every host (IP literal or name) into the addresses it connects to
        async def _resolve_host(self, host, port, traces=None):
            hosts = await super()._resolve_host(host, port, traces=traces)
            for h in hosts:
                if not is_public_address(h["host"]):
                    raise OSError(f"{host} is a local or private-network address ({h['host']}): refused")
            return hosts

    return aiohttp.ClientSession(connector=PublicConnector(), **kwargs)


def is_public_address(ip: str) -> bool:
    """A global unicast address (not loopback, private, link-local, shared, reserved or multicast)."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def check_spec(spec: str | os.PathLike) -> None:
    """Refuse a spec naming anything but paths and the addresses we read (`check_location` on the spec, on each
    location its braces expand to, and on an `hf:json:` data-files part), without touching the disk.

    Raises:
        DataError: `pipe:` or another scheme we do not read, named with the fix.
    """
    spec = os.fspath(spec).strip()
    if spec in (DEFAULT_DATA, DEFAULT_DATA + HELDOUT, PYTHON_QA):
        return
    if spec.startswith(HF_PREFIX):
        parse_hf(spec)
        return
    check_location(spec)
    if "{" in spec and "}" in spec:
        from braceexpand import braceexpand  # a webdataset dependency
        for location in braceexpand(spec):  # braces can make a scheme ("{pipe,x}:...")
            check_location(location)


def resolve_inputs(spec: str | os.PathLike) -> list[_Input]:
    """The inputs a spec names, in reading order (sorted). A pattern's shards are not checked here: a missing one
    is reported when reading reaches it. Raises DataError when nothing usable is named."""
    spec = os.fspath(spec).strip()
    if spec in (DEFAULT_DATA, DEFAULT_DATA + HELDOUT):
        assets = require_default()  # built by the entry point (CLI, app, job), never here
        folder = assets.corpus_heldout if spec.endswith(HELDOUT) else assets.corpus_train
        return [_Input("tar", str(p), p.name) for p in sorted(Path(folder).glob("*.tar"))]  # not heldout/ below
    check_spec(spec)
    if spec.startswith(HF_PREFIX):
        return [_Input("hf", spec, spec[len(HF_PREFIX):])]
    if "://" in spec or ("{" in spec and "}" in spec):
        from braceexpand import braceexpand  # a webdataset dependency

        locations = list(braceexpand(spec))
    elif any(c in spec for c in "*?["):
        locations = sorted(p for p in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(p))
        if not locations:
            raise DataError(f"No files match {spec}.")
    elif (path := Path(spec).expanduser()).is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(FOLDER_SUFFIXES))
        if not files:
            raise DataError(f"The folder {spec} holds no {', '.join(FOLDER_SUFFIXES)} files.")
        return [_Input(_kind(str(p)), str(p), p.relative_to(path).as_posix()) for p in files]
    elif path.is_file():
        locations = [str(path)]
    else:
        raise DataError(f"No data at {spec}: give llmfs-corpus, a file, a folder, a glob, a shard pattern or hf:NAME.")
    inputs = []
    for location, name in zip(locations, _names(locations, os.path.expanduser(spec))):
        kind = _kind(location)
        if kind is None or ("://" in location and kind != "tar"):
            raise DataError(f"{location}: cannot read this kind of file. Readable: {', '.join(FOLDER_SUFFIXES)}, "
                            ".json (JSON Lines); over http(s) only tar shards (use hf:json:<url> for JSON Lines).")
        inputs.append(_Input(kind, location, name))
    return inputs


def _kind(location: str) -> str | None:
    low = location.lower()
    for kind, suffixes in (("tar", TAR_SUFFIXES), ("parquet", PARQUET_SUFFIXES), ("jsonl", JSONL_SUFFIXES),
                           ("text", TEXT_SUFFIXES)):
        if low.endswith(suffixes):
            return kind
    return None


def _names(locations: list[str], pattern: str) -> list[str]:
    """Each location relative to the pattern's fixed directory (the parts before the first wildcard or brace)."""
    parts = pattern.split("/")
    fixed = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[{")), len(parts) - 1)
    base = "/".join(parts[:fixed])
    return [loc[len(base) + 1:] if base and loc.startswith(base + "/") else loc for loc in locations]
