"""Experiment tracking with the tools people already use: TensorBoard event files and an MLflow tracking server.

- **TensorBoard**: every run writes event files to `<run dir>/tensorboard/` as it goes (flushed every few seconds),
  so `tensorboard --logdir $LLMFS_HOME/runs` shows every run, live. `TensorBoardWriter` turns the records a job
  emits (the lines of metrics.jsonl) into scalars: `train/loss` (exactly one a step), `train/learning_rate`,
  `train/tokens_per_s`, `train/grad_norm`, `train/loss_scale`, `eval/loss` (held-out loss), `memory/..._MiB`, an
  evaluation's running scores (`benchmark/<metric>`) and final ones (`benchmark/final/<metric>`), a pipeline's
  documents per second (`pipeline/...`). `LLMFS_TENSORBOARD=0` turns it off.
- **MLflow**: when `LLMFS_MLFLOW_URI` (else MLflow's own `MLFLOW_TRACKING_URI`) is set, `export_to_mlflow` sends a
  finished run (whatever its state) to that server, or to a local store for a folder or `file:` URI: one MLflow run
  in experiment `LLMFS_MLFLOW_EXPERIMENT` (else `MLFLOW_EXPERIMENT_NAME`, else `llmfs`) with the run's config as
  params, its metrics.jsonl series as metrics, and its adapter, results.json and config.json as artifacts.
  status.json records where it went (`mlflow: {uri, experiment_id, run_id}`).

Tracking never fails a run: a writer or a server that errs costs one line in the run's log, and the run goes on.
Both libraries are imported only when a job writes (inside the job's process), never by the app.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit

from .runs import CANCELLED, FAILED, INTERRUPTED, SUCCEEDED, Run

TENSORBOARD_DIR = "tensorboard"
FLUSH_SECS = 5        # a live `tensorboard` shows a running job's progress within seconds
MIB = 1024 * 1024
DEFAULT_EXPERIMENT = "llmfs"

# What a record of each kind (metrics.jsonl's "kind") puts in TensorBoard and MLflow:
# field -> (TensorBoard tag, MLflow metric key, divisor). Fields not listed are not scalars worth a chart.
SCALARS: dict[str, dict[str, tuple[str, str, float]]] = {
    "train": {"loss": ("train/loss", "loss", 1), "lr": ("train/learning_rate", "lr", 1),
              "tokens_per_s": ("train/tokens_per_s", "tokens_per_s", 1),
              "grad_norm": ("train/grad_norm", "grad_norm", 1)},
    "eval": {"eval_loss": ("eval/loss", "eval_loss", 1)},
    "scaler": {"loss_scale": ("train/loss_scale", "loss_scale", 1)},
    "telemetry": {"process_rss_bytes": ("memory/process_rss_MiB", "memory_process_rss_mib", MIB),
                  "cuda_allocated_bytes": ("memory/cuda_allocated_MiB", "memory_cuda_allocated_mib", MIB),
                  "cuda_peak_allocated_bytes": ("memory/cuda_peak_allocated_MiB", "memory_cuda_peak_allocated_mib",
                                                MIB),
                  "gpu_memory_used_bytes": ("memory/gpu_used_MiB", "memory_gpu_used_mib", MIB)},
    "tensor_memory": {"weights_bytes": ("memory/tensors/weights_MiB", "memory_weights_mib", MIB),
                      "gradients_bytes": ("memory/tensors/gradients_MiB", "memory_gradients_mib", MIB),
                      "optimizer_bytes": ("memory/tensors/optimizer_MiB", "memory_optimizer_mib", MIB),
                      "activations_bytes": ("memory/tensors/activations_MiB", "memory_activations_mib", MIB)},
    "pipeline": {"documents_in": ("pipeline/documents_in", "documents_in", 1),
                 "documents_out": ("pipeline/documents_out", "documents_out", 1),
                 "documents_per_s": ("pipeline/documents_in_per_s", "documents_in_per_s", 1),
                 "documents_out_per_s": ("pipeline/documents_out_per_s", "documents_out_per_s", 1),
                 "bytes_per_s": ("pipeline/MiB_in_per_s", "mib_in_per_s", MIB)},
}
_NOT_SCORES = {"done", "total", "step", "time", "kind"}   # an eval_progress record's fields that are not scores


def scalars(record: dict) -> list[tuple[str, str, float]]:
    """The (TensorBoard tag, MLflow key, value) of each number worth charting in one metrics.jsonl record."""
    kind = record.get("kind", "train")
    values = dict(record)
    if kind == "pipeline" and values.get("elapsed_s"):
        values["documents_out_per_s"] = (values.get("documents_out") or 0) / values["elapsed_s"]
    if kind == "eval_progress":  # an evaluation's running scores (accuracy, perplexity, ...) over the items done
        fields = {k: (f"benchmark/{k}", k, 1) for k in values if k not in _NOT_SCORES}
    else:
        fields = SCALARS.get(kind, {})
    out = []
    for name, (tag, key, divisor) in fields.items():
        value = _number(values.get(name))
        if value is not None:
            out.append((tag, key, value / divisor))
    return out


def result_scalars(result: dict) -> list[tuple[str, str, float]]:
    """An evaluation's final scores (results.json's `metrics`, standard errors included)."""
    metrics = result.get("metrics") if isinstance(result, dict) else None
    if not isinstance(metrics, dict):
        return []
    return [(f"benchmark/final/{k}", k, v) for k, v in ((k, _number(v)) for k, v in metrics.items())
            if v is not None]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# -- TensorBoard ----------------------------------------------------------------------------------------------------
def tensorboard_enabled() -> bool:
    return os.environ.get("LLMFS_TENSORBOARD", "1").strip().lower() not in ("0", "false", "no", "off")


class TensorBoardWriter:
    """One run's TensorBoard event files, written as its job emits records (`write`), closed at its end (`close`).

    Opened lazily, at the first scalar: a job that charts nothing leaves no file (a torchrun launcher closes its
    writer at once, `JobContext.stop_telemetry`: rank 0 charts the run). Thread-safe: the telemetry sampler's thread
    writes too. Memory is written once a step (the first sample at each step), so the memory charts share the loss's
    step axis without piling several points on one step.

    A resumed run appends a new event file in the same folder, whose first record's step tells TensorBoard to drop
    what the interrupted attempt wrote from that step on (steps after the last checkpoint are trained again): still
    exactly one `train/loss` per step. The resumed attempt's memory samples before its first step are skipped.
    """

    def __init__(self, run: Run, resume: bool = False, flush_secs: int = FLUSH_SECS):
        self.run = run
        self.resume = resume
        self.flush_secs = flush_secs
        self.enabled = tensorboard_enabled()
        self._writer = None
        self._closed = False
        self._telemetry_step: int | None = None
        self._protos: tuple = ()
        self._lock = threading.Lock()

    @property
    def log_dir(self) -> Path:
        return self.run.path / TENSORBOARD_DIR

    def write(self, record: dict) -> None:
        """Chart one metrics.jsonl record (as `Run.append_metrics` returned it)."""
        if not self.enabled:
            return
        values = scalars(record)
        if not values:
            return
        step, kind = int(record.get("step", 0)), record.get("kind", "train")
        with self._lock:
            if kind == "telemetry":
                if step == self._telemetry_step:
                    return
                if self._writer is None and self.resume:
                    return  # before the resumed attempt's first step: its step is not known yet
                self._telemetry_step = step
            self._add(values, step, record.get("time"))

    def write_result(self, result: dict, step: int) -> None:
        """An evaluation's final scores, at its last step."""
        if not self.enabled:
            return
        values = result_scalars(result)
        if values:
            with self._lock:
                self._add(values, step, time.time())

    def _add(self, values: list[tuple[str, str, float]], step: int, walltime: float | None) -> None:
        if self._closed or not self.enabled:
            return
        try:
            if self._writer is None:
                self._writer = self._open(step)
            Event, Summary = self._protos
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, _, value in values])
            self._writer.add_event(Event(wall_time=walltime or time.time(), step=step, summary=summary))
        except Exception as e:  # noqa: BLE001 - charts are a convenience; the run must go on without them
            self._fail(e)

    def _open(self, step: int):
        # tensorboard's own writer (no torch: a job that never imports torch stays without it), imported only in a
        # job's process, once it has a scalar; its thread writes the file and flushes it every flush_secs
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        self._protos = (Event, Summary)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        writer = EventFileWriter(str(self.log_dir), max_queue_size=100, flush_secs=self.flush_secs)
        if self.resume:  # TensorBoard hides the interrupted attempt's events from this step on (they are redone)
            writer.add_event(Event(wall_time=time.time(), step=step, session_log=SessionLog(status=SessionLog.START)))
        return writer

    def _fail(self, e: Exception) -> None:
        self.enabled = False
        writer, self._writer = self._writer, None
        try:
            self.run.log(f"TensorBoard: could not write this run's charts ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200] if str(e) else ''}); the run goes on without them.")
        except Exception:  # noqa: BLE001 - a full disk: nothing more to say
            pass
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    def flush(self) -> None:
        with self._lock:
            if self._writer is not None and self.enabled:
                try:
                    self._writer.flush()
                except Exception as e:  # noqa: BLE001
                    self._fail(e)

    def close(self) -> None:
        """Flush and close the event file (idempotent); later writes are ignored."""
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
            if writer is not None and self.enabled:
                try:
                    writer.close()
                except Exception as e:  # noqa: BLE001
                    self._fail(e)


# -- MLflow ---------------------------------------------------------------------------------------------------------
# An unreachable server should cost seconds, not MLflow's default minutes of retries (the user's settings win)
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
MLFLOW_STATES = {SUCCEEDED: "FINISHED", FAILED: "FAILED", CANCELLED: "KILLED", INTERRUPTED: "KILLED"}
ARTIFACTS = ("results.json", "config.json")   # plus the adapter folder
PARAM_MAX_CHARS = 6000    # MLflow's limit on a param's value
BATCH_METRICS = 1000      # MLflow's limits per log_batch call
BATCH_PARAMS = 100


def mlflow_uri(environ: dict | None = None) -> str | None:
    """Where runs go: `LLMFS_MLFLOW_URI`, else `MLFLOW_TRACKING_URI`; None when neither is set. A folder or a
    `file:` URI becomes an absolute `file://` URI (a local store)."""
    env = os.environ if environ is None else environ
    uri = (env.get("LLMFS_MLFLOW_URI") or env.get("MLFLOW_TRACKING_URI") or "").strip()
    if not uri:
        return None
    if is_local_store(uri):
        path = uri[len("file:"):] if uri.startswith("file:") else uri
        if path.startswith("//"):
            path = urlsplit(uri).path
        return Path(os.path.expanduser(path)).resolve().as_uri()
    return uri


def is_local_store(uri: str) -> bool:
    if uri in ("databricks", "databricks-uc"):   # MLflow's names for a Databricks workspace, not folders
        return False
    scheme = urlsplit(uri).scheme
    return uri.startswith("file:") or not scheme or (len(scheme) == 1 and os.name == "nt")  # C:\ on Windows


def mlflow_experiment(environ: dict | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get("LLMFS_MLFLOW_EXPERIMENT") or env.get("MLFLOW_EXPERIMENT_NAME") or "").strip() \
        or DEFAULT_EXPERIMENT


def shown_uri(uri: str) -> str:
    """A URI as the log and the app show it: without a password (http://user:secret@host)."""
    parts = urlsplit(uri)
    if parts.password is None and not parts.username:
        return uri
    host = parts.hostname or ""
    return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, parts.query,
                       parts.fragment))


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """A config as MLflow params: nested dicts as dotted keys, every value as text (cut to MLflow's limit)."""
    if not isinstance(config, dict):
        return {prefix or "value": str(config)[:PARAM_MAX_CHARS]}
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = str(value)[:PARAM_MAX_CHARS]
    return out


def metric_series(records: Iterable[dict], result: dict | None = None, since: float = 0.0
                  ) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp in ms, step) for every charted number of metrics.jsonl's records newer than `since`,
    one per key and step (the last: a resumed run's retrained steps replace the interrupted attempt's), plus an
    evaluation's final scores at its last step."""
    points: dict[tuple[str, int], tuple[float, int]] = {}
    last_step, last_time = 0, since
    for record in records:
        t = float(record.get("time") or 0.0)
        if t <= since:
            continue
        step = int(record.get("step", 0))
        last_step, last_time = max(last_step, step), max(last_time, t)
        for _, key, value in scalars(record):
            points[(key, step)] = (value, int(t * 1000))
    for _, key, value in result_scalars(result or {}):
        points[(key, last_step)] = (value, int(last_time * 1000) or int(time.time() * 1000))
    return [(key, value, ts, step) for (key, step), (value, ts) in points.items()]


def export_to_mlflow(run: Run, environ: dict | None = None) -> dict | None:
    """Send a finished run to MLflow when a tracking URI is set (see the module's docstring); never raises.

    Returns what status.json records (`{"uri", "experiment_id", "run_id", ...}`), None when nothing was sent.
    A run resumed after an earlier export goes on in the same MLflow run, with the metrics recorded since.
    """
    uri = mlflow_uri(environ)
    if uri is None:
        return None
    experiment = mlflow_experiment(environ)
    try:
        record = _export(run, uri, experiment)
    except Exception as e:  # noqa: BLE001 - an unreachable server, a bad URI, a full disk: the run stays as it is
        _log(run, f"MLflow: could not record this run at {shown_uri(uri)} ({type(e).__name__}: "
                  f"{_first_line(e)}); the run itself is not affected.")
        return None
    _log(run, f"MLflow: recorded as run {record['run_id']} in experiment {experiment!r} at {record['uri']}.")
    return record


def _export(run: Run, uri: str, experiment: str) -> dict:
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if is_local_store(uri):
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"   # MLflow 3 refuses a file store otherwise
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, experiment)
    status, record = run.status(), run.config_record()
    result = status.get("result") or {}
    earlier = status.get("mlflow") or {}
    run_id, since = None, 0.0
    if earlier.get("uri") == shown_uri(uri) and earlier.get("experiment_id") == experiment_id and earlier.get("run_id"):
        try:  # a resumed run: the same MLflow run, the metrics recorded since the last export
            found = client.get_run(earlier["run_id"])
            run_id, since = found.info.run_id, float(earlier.get("metrics_until") or 0.0)
            if "llmfs.error" in found.data.tags and not status.get("error"):
                client.delete_tag(run_id, "llmfs.error")   # the earlier attempt's failure, now resumed past
        except Exception:  # noqa: BLE001 - deleted on the server: a new one
            run_id = None
    user = status.get("user") or record.get("user")
    tags = {"llmfs.run_id": run.run_id, "llmfs.kind": run.kind, "llmfs.state": status.get("state", ""),
            "llmfs.user": user or "", "llmfs.owner": status.get("owner") or record.get("owner") or "",
            "llmfs.run_dir": str(run.path.resolve())}
    if user:
        tags["mlflow.user"] = user
    if status.get("error"):
        tags["llmfs.error"] = str(status["error"])[:PARAM_MAX_CHARS]
    new = run_id is None
    if new:
        started = status.get("started") or record.get("created") or time.time()
        run_id = client.create_run(experiment_id, start_time=int(started * 1000),
                                   run_name=run.name or run.run_id).info.run_id
    records = run.read_metrics()
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in metric_series(records, result, since)]
    params = [Param(k, v) for k, v in flatten(run.config()).items()] if new else []
    tag_list = [RunTag(k, str(v)) for k, v in tags.items()]
    # log_batch takes at most 1000 values a call (100 of them params): the tags and params first, then the metrics
    client.log_batch(run_id, params=params[:BATCH_PARAMS], tags=tag_list)
    for i in range(BATCH_PARAMS, len(params), BATCH_PARAMS):
        client.log_batch(run_id, params=params[i:i + BATCH_PARAMS])
    for i in range(0, len(metrics), BATCH_METRICS):
        client.log_batch(run_id, metrics=metrics[i:i + BATCH_METRICS])
    adapter = run.path / "adapter"
    if adapter.is_dir():
        client.log_artifacts(run_id, str(adapter), artifact_path="adapter")
    for name in ARTIFACTS:
        if (run.path / name).is_file():
            client.log_artifact(run_id, str(run.path / name))
    finished = status.get("finished")
    client.set_terminated(run_id, status=MLFLOW_STATES.get(status.get("state"), "KILLED"),
                          end_time=int(finished * 1000) if finished else None)
    until = max([since] + [float(r.get("time") or 0.0) for r in records])
    out = {"uri": shown_uri(uri), "experiment_id": experiment_id, "run_id": run_id, "experiment": experiment,
           "metrics_until": until}
    run.update_status(mlflow=out)
    return out


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # another job created it in the meantime
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:300] if text else "no details")


def _log(run: Run, message: str) -> None:
    try:
        run.log(message)
    except OSError:
        pass

