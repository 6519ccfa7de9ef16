"""UI response under load: page load time and live-panel refresh interval with 1, 10 and 30 browser sessions
while a training run trains in the same server.

Set-up: a fresh LLMFS_HOME (the embedded default copied from ~/.cache/llmfs, else built first: minutes), a real
`streamlit run streamlit_app.py` on a free loopback port, and one headless Debian Chromium. A first browser session
starts a fine-tune from the L12 page (llmfs-tiny, the page's defaults: batch 8 x 128 tokens, `--train-steps` steps)
and leaves; the run trains for the whole benchmark, in a child process of the server (the app's default) or, with
`--isolation thread`, in the server's job thread. Then, for each concurrency level,
that many new browser contexts (separate Streamlit sessions, like separate participants) open the L12 page at the
same moment:

- page load: from `goto` until the page's title (an <h1>) is rendered, per session;
- refresh interval: each session opens the "4 · Fine-tune" tab, whose run panel shows the running job
  ("Step N of M", redrawn by a fragment every `app.panels.POLL_S` = 1 s); a MutationObserver records when the step
  counter changes, and the intervals between successive changes over `--observe` seconds are pooled;
- server update interval: the time between bursts of WebSocket messages the page receives (a fragment's rerun),
  whether or not the step counter moved;
- training steps/s over the level, and the CPU used by the server, by Chromium and by everything else.

No workshop limits file: the lab is in single-user mode, so every session's L12 panel shows that one run. Median
and p95 per level are printed as a markdown table (and a JSON line). The browser runs on the same 2 cores as the
server and the training, so these figures are pessimistic for a workshop, where the browsers are elsewhere.

    .venv/bin/python bench/ui_response.py                       # 0, 1, 10, 30 sessions; 10-20 minutes on 2 cores
    .venv/bin/python bench/ui_response.py --levels 1 5 --observe 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGE = "/l12_pretrained"
TITLE = re.compile(r"^L12")
# Installed in each page: record (time, step) whenever the run panel's "Step N of M" changes.
# Installed before the page's own scripts: note the time of every WebSocket message from the server (an update of
# the page; a fragment's rerun arrives as a burst of messages). Kept in the page: nothing is sent to the bench.
FRAMES_JS = """(() => {
    const Native = window.WebSocket;
    window.__frames = [];
    window.WebSocket = function (...args) {
        const ws = new Native(...args);
        ws.addEventListener('message', () => window.__frames.push(performance.now()));
        return ws;
    };
    window.WebSocket.prototype = Native.prototype;
    Object.assign(window.WebSocket, Native);
})();"""
OBSERVER_JS = """() => {
    window.__steps = [];
    const read = () => {
        const el = document.querySelector('[data-testid="stProgress"]');
        const m = el && el.textContent.match(/Step ([\\d,]+) of/);
        return m ? m[1] : null;
    };
    let last = read();
    new MutationObserver(() => {
        const v = read();
        if (v !== null && v !== last) { last = v; window.__steps.push([performance.now(), v]); }
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def prepare_home(home: Path) -> None:
    cache = Path("~/.cache/llmfs/default").expanduser()
    if (cache / "READY.json").is_file():
        shutil.copytree(cache, home / "default")
        return
    print("building the embedded default (llmfs-tiny) first: this takes minutes ...", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "from llmfs.bootstrap import ensure_default; ensure_default()"],
                   cwd=REPO, env={**os.environ, "LLMFS_HOME": str(home)}, check=True)


def start_server(home: Path, log_path: Path, isolation: str = "process") -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "LLMFS_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "LLMFS_JOB_ISOLATION": isolation}
    env.pop("LLMFS_WORKSHOP_CONFIG", None)
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                               "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=REPO, env=env,
                              stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("the server did not become healthy in 120 s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)


def train_steps_done(run_dir: Path) -> int:
    steps = 0
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("kind") == "train":
                steps = max(steps, int(rec.get("step", 0)))
    return steps


def run_state(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "status.json").read_text()).get("state", "?")
    except (OSError, json.JSONDecodeError):
        return "?"


async def start_training(browser, url: str, steps: int, home: Path) -> Path:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1600})
    page = await ctx.new_page()
    page.set_default_timeout(120_000)
    await page.goto(url + PAGE)
    await page.get_by_role("tab", name="4 · Fine-tune").click()
    field = page.get_by_role("spinbutton", name="Training steps")
    await field.fill(str(steps))
    await field.press("Enter")
    start = page.get_by_role("button", name="Start training")
    for _ in range(120):
        if await start.is_enabled():
            break
        await asyncio.sleep(0.25)
    await start.click()
    deadline = time.time() + 180
    while time.time() < deadline:
        runs = [d for d in (home / "runs").iterdir() if d.is_dir()] if (home / "runs").is_dir() else []
        if runs and train_steps_done(runs[0]) >= 3:
            await ctx.close()
            return runs[0]
        await asyncio.sleep(0.5)
    raise TimeoutError("the training run did not reach step 3 in 180 s")


async def one_session(browser, url: str, observe_s: float, timeout_s: float) -> dict:
    """One participant: load the page, open the run panel, watch it. Which stage timed out, if any, is recorded
    (a timed-out load counts as `timeout_s` in the percentiles: a lower bound)."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    ctx = await browser.new_context(viewport={"width": 1280, "height": 1000})
    try:
        page = await ctx.new_page()
        page.set_default_timeout(timeout_s * 1000)
        await page.add_init_script(FRAMES_JS)
        t0 = time.perf_counter()
        try:
            await page.goto(url + PAGE, wait_until="commit")
            await page.get_by_role("heading", name=TITLE).first.wait_for()
        except PlaywrightTimeout:
            return {"load_s": None, "intervals_s": [], "updates": 0, "push_intervals_s": [], "stage": "load"}
        load_s = time.perf_counter() - t0
        try:
            await page.get_by_role("tab", name="4 · Fine-tune").click()
            await page.locator('[data-testid="stProgress"]').first.wait_for()
        except PlaywrightTimeout:
            return {"load_s": load_s, "intervals_s": [], "updates": 0, "push_intervals_s": [], "stage": "panel"}
        await page.evaluate(OBSERVER_JS)
        watch0 = await page.evaluate("() => performance.now()")
        await asyncio.sleep(observe_s)
        steps = await page.evaluate("() => window.__steps")
        frames = await page.evaluate("() => window.__frames || []")
        times = [t / 1000 for t, _ in steps]
        pushes = bursts([t / 1000 for t in frames if t >= watch0])
        return {"load_s": load_s, "intervals_s": [b - a for a, b in zip(times, times[1:])], "updates": len(steps),
                "push_intervals_s": [b - a for a, b in zip(pushes, pushes[1:])], "stage": "ok"}
    finally:
        await ctx.close()


async def protocol_session(url: str, observe_s: float, timeout_s: float) -> dict:
    """One participant without a browser: a WebSocket client speaking Streamlit's own protocol (BackMsg /
    ForwardMsg protobufs) opens the L12 page and re-runs each auto-rerun fragment at its interval, as the browser's
    frontend does (the run panel's every second, the sidebar's queue box every two), for `observe_s` seconds after
    the run panel (its progress bar) first arrives. `rerun_s`: from asking for a fragment rerun to its end."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ClientState_pb2 import ClientState
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    page = PAGE.strip("/")
    out = {"load_s": None, "intervals_s": [], "updates": 0, "push_intervals_s": [], "rerun_s": [], "stage": "load"}
    import collections
    fragments: dict[str, float] = {}
    pending: collections.deque = collections.deque()  # (fragment id, sent at): the server runs them in order
    steps: list[tuple[float, int]] = []
    finished: list[float] = []
    panel_at: list[float] = []

    def rerun(fragment_id: str = "") -> bytes:
        return BackMsg(rerun_script=ClientState(page_name=page, fragment_id=fragment_id,
                                                is_auto_rerun=bool(fragment_id))).SerializeToString()

    async def tick(ws, fragment_id: str) -> None:
        while fragment_id in fragments:
            await asyncio.sleep(fragments[fragment_id])
            if all(f != fragment_id for f, _ in pending):  # one outstanding rerun per fragment
                pending.append((fragment_id, time.perf_counter()))
                await ws.send(rerun(fragment_id))

    t0 = time.perf_counter()
    deadline = t0 + timeout_s
    try:
        async with websockets.connect(url.replace("http://", "ws://") + "/_stcore/stream",
                                      subprotocols=["streamlit"], max_size=None, open_timeout=timeout_s) as ws:
            pending.append(("", t0))
            await ws.send(rerun())
            tasks = []
            while True:
                now = time.perf_counter()
                end = panel_at[0] + observe_s if panel_at else deadline if out["load_s"] is None else \
                    t0 + out["load_s"] + timeout_s
                if now >= end:
                    break
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=end - now)
                except asyncio.TimeoutError:
                    break
                msg = ForwardMsg.FromString(raw)
                kind = msg.WhichOneof("type")
                now = time.perf_counter()
                if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                    el = msg.delta.new_element
                    what = el.WhichOneof("type")
                    if what == "heading" and out["load_s"] is None and TITLE.match(el.heading.body):
                        out["load_s"], out["stage"] = now - t0, "panel"
                    elif what == "progress" and (m := re.search(r"Step ([\d,]+) of", el.progress.text)):
                        if not panel_at:
                            panel_at.append(now)
                        step = int(m.group(1).replace(",", ""))
                        if not steps or steps[-1][1] != step:
                            steps.append((now, step))
                elif kind == "auto_rerun" and msg.auto_rerun.fragment_id not in fragments:
                    fragments[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
                    tasks.append(asyncio.create_task(tick(ws, msg.auto_rerun.fragment_id)))
                elif kind == "script_finished":
                    if pending:
                        out["rerun_s"].append(now - pending.popleft()[1])
                    finished.append(now)
            fragments.clear()
            for task in tasks:
                task.cancel()
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    if panel_at:
        out["stage"] = "ok"
        watched = [t for t, _ in steps if t >= panel_at[0]]
        out["intervals_s"] = [b - a for a, b in zip(watched, watched[1:])]
        done = [t for t in finished if t >= panel_at[0]]
        out["push_intervals_s"] = [b - a for a, b in zip(done, done[1:])]
        out["updates"] = len(watched)
        out["rerun_s"] = out["rerun_s"][1:]  # the first is the page load
    return out


def cpu_seconds(server: subprocess.Popen) -> tuple[dict, dict, dict]:
    """CPU seconds used so far, by pid: the server process itself (the pages), its children (the job's process and
    the fork server; nothing with --isolation thread), and Chromium's processes."""
    import psutil

    def used(procs) -> dict:
        out = {}
        for proc in procs:
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    root = psutil.Process(server.pid)
    chromium = [p for p in psutil.process_iter(["name"]) if "chrom" in (p.info["name"] or "")]
    return used([root]), used(root.children(recursive=True)), used(chromium)


def cpu_delta(before: dict, after: dict) -> float:
    """CPU seconds used between two `cpu_seconds` readings by the processes alive at the second."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def bursts(times: list[float], gap_s: float = 0.25) -> list[float]:
    """The start of each burst of WebSocket frames (frames closer than `gap_s` are one update)."""
    starts: list[float] = []
    last = None
    for t in sorted(times):
        if last is None or t - last > gap_s:
            starts.append(t)
        last = t
    return starts


def proc_stat() -> list[int]:
    """The machine's CPU time counters (user nice system idle iowait irq softirq steal), in ticks."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


async def level(browser, url: str, n: int, args, run_dir: Path, server: subprocess.Popen) -> dict:
    observe_s = args.observe
    steps0, t0 = train_steps_done(run_dir), time.time()
    server_cpu0, job_cpu0, chromium_cpu0 = cpu_seconds(server)
    stat0 = proc_stat()
    if n == 0:   # the baseline: the run's pace with no browser session open
        await asyncio.sleep(observe_s)
    if args.clients == "protocol":
        sessions = (protocol_session(url, observe_s, args.timeout) for _ in range(n))
    else:
        sessions = (one_session(browser, url, observe_s, args.timeout) for _ in range(n))
    results = await asyncio.gather(*sessions, return_exceptions=True)
    steps1, t1 = train_steps_done(run_dir), time.time()
    server_cpu1, job_cpu1, chromium_cpu1 = cpu_seconds(server)
    ticks = [b - a for a, b in zip(stat0, proc_stat())]
    busy = {name: ticks[i] / max(sum(ticks), 1) for i, name in ((0, "user"), (2, "system"), (3, "idle"),
                                                                (4, "iowait"), (7, "steal"))}
    ok = [r for r in results if isinstance(r, dict)]
    errors = [f"{type(r).__name__}: {str(r).splitlines()[0][:120]}" for r in results if not isinstance(r, dict)]
    errors += [f"timed out ({args.timeout:.0f} s) waiting for the {r['stage']}" for r in ok if r["stage"] != "ok"]
    loads = [r["load_s"] if r["load_s"] is not None else args.timeout for r in ok]
    intervals = [i for r in ok for i in r["intervals_s"]]
    pushes = [i for r in ok for i in r["push_intervals_s"]]
    reruns = [i for r in ok for i in r.get("rerun_s", [])]
    return {"sessions": n, "ok": sum(r["stage"] == "ok" for r in ok), "errors": errors, "cpu_shares": busy,
            "load_timeouts": sum(r["load_s"] is None for r in ok),
            "load_median_s": statistics.median(loads) if loads else None,
            "load_p95_s": quantile(loads, 0.95), "load_max_s": max(loads) if loads else None,
            "refresh_median_s": statistics.median(intervals) if intervals else None,
            "refresh_p95_s": quantile(intervals, 0.95), "refresh_samples": len(intervals),
            "train_steps_per_s": (steps1 - steps0) / (t1 - t0), "run_state_after": run_state(run_dir),
            "seconds": t1 - t0, "server_cores": cpu_delta(server_cpu0, server_cpu1) / (t1 - t0),
            "job_cores": cpu_delta(job_cpu0, job_cpu1) / (t1 - t0),
            "chromium_cores": cpu_delta(chromium_cpu0, chromium_cpu1) / (t1 - t0),
            "machine_busy_cores": (1 - busy["idle"]) * (os.cpu_count() or 1),
            "push_median_s": statistics.median(pushes) if pushes else None, "push_p95_s": quantile(pushes, 0.95),
            "push_samples": len(pushes), "rerun_median_s": statistics.median(reruns) if reruns else None,
            "rerun_p95_s": quantile(reruns, 0.95), "rerun_samples": len(reruns)}


def server_rss_mb(server: subprocess.Popen) -> float | None:
    try:
        import psutil
        proc = psutil.Process(server.pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20
    except Exception:
        return None


def chromium_rss_mb() -> float | None:
    try:
        import psutil
        procs = [p for p in psutil.process_iter(["name"]) if "chrom" in (p.info["name"] or "")]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except Exception:
        return None


async def bench(args) -> list[dict]:
    from playwright.async_api import async_playwright

    home = Path(tempfile.mkdtemp(prefix="llmfs-ui-bench-"))
    server = None
    try:
        prepare_home(home)
        server, url = start_server(home, home / "streamlit.log", args.isolation)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                run_dir = await start_training(browser, url, args.train_steps, home)
                print(f"training run {run_dir.name} is going ({train_steps_done(run_dir)} steps done)", file=sys.stderr)
                if args.clients == "protocol":  # the browser is not needed any more: leave the CPU to the server
                    await browser.close()
                rows = []
                for n in args.levels:
                    row = await level(browser, url, n, args, run_dir, server)
                    row["server_rss_mb"], row["chromium_rss_mb"] = server_rss_mb(server), chromium_rss_mb()
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
                    if row["run_state_after"] != "running":
                        print(f"warning: the training run is {row['run_state_after']}, not running", file=sys.stderr)
                return rows
            finally:
                await browser.close()
    finally:
        if server is not None:
            stop_server(server)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def machine() -> str:
    import psutil
    import streamlit
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} vCPU, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, no GPU; "
            f"streamlit {streamlit.__version__}, Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.1f} at the end")


def fmt(x: float | None, unit: str = "s", digits: int = 2) -> str:
    return "-" if x is None or x != x else f"{x:,.{digits}f} {unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[0, 1, 10, 30],
                    help="concurrent browser sessions (0: the training pace with none)")
    ap.add_argument("--observe", type=float, default=20.0, help="seconds each session watches the run panel")
    ap.add_argument("--train-steps", type=int, default=20_000,
                    help="steps of the background run (more than it gets to do: the server is stopped at the end)")
    ap.add_argument("--timeout", type=float, default=240.0,
                    help="seconds a session waits for the page, then for the run panel, before giving up")
    ap.add_argument("--keep", action="store_true", help="keep the temporary LLMFS_HOME (server log inside)")
    ap.add_argument("--clients", choices=["browser", "protocol"], default="browser",
                    help="browser: a Chromium context per session (on this machine's cores too); protocol: a "
                         "WebSocket client per session speaking Streamlit's protocol, no rendering (the server's "
                         "side of a workshop whose browsers are on the participants' laptops)")
    ap.add_argument("--isolation", choices=["process", "thread"], default="process",
                    help="where the server runs the job: a child process (the app's default) or a thread of the "
                         "server (as before; $LLMFS_JOB_ISOLATION)")
    args = ap.parse_args()
    rows = asyncio.run(bench(args))
    print(json.dumps({"machine": machine(), "rows": rows}))
    print(f"\n{machine()}\n")
    print("| sessions | page load median | page load p95 | server update interval median | p95 | "
          "step counter interval median | p95 | fragment rerun median | p95 | training steps/s meanwhile | "
          "server CPU (pages, cores) | job CPU (cores) | Chromium CPU (cores) | other processes (cores) | "
          "sessions failed | server RSS | Chromium RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bound = ">= " if r["load_timeouts"] else ""   # timed-out loads counted at the timeout: lower bounds
        print(f"| {r['sessions']} | {bound}{fmt(r['load_median_s'])} | {bound}{fmt(r['load_p95_s'])} | "
              f"{fmt(r['push_median_s'])} | {fmt(r['push_p95_s'])} | "
              f"{fmt(r['refresh_median_s'])} | {fmt(r['refresh_p95_s'])} | {fmt(r['rerun_median_s'])} | "
              f"{fmt(r['rerun_p95_s'])} | {r['train_steps_per_s']:.2f} | "
              f"{r['server_cores']:.2f} | {r['job_cores']:.2f} | {r['chromium_cores']:.2f} | "
              f"{max(0.0, r['machine_busy_cores'] - r['server_cores'] - r['job_cores'] - r['chromium_cores']):.2f} | "
              f"{len(r['errors'])} of {r['sessions']} | "
              f"{fmt(r['server_rss_mb'], 'MiB', 0)} | {fmt(r['chromium_rss_mb'], 'MiB', 0)} |")


if __name__ == "__main__":
    main()
