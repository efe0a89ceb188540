"""Load test: several simultaneous browser-less sessions against `streamlit run app.py` on 127.0.0.1.

Each session speaks Streamlit's own protocol as the browser does: it GETs /_stcore/health and keeps the
`_streamlit_xsrf` cookie it sets (XSRF protection is on, as on any normal server), opens the websocket with
that cookie, the page's Origin and the token as the second subprotocol, opens the Predict page, uploads an
image with a PUT to /_stcore/upload_file carrying the cookie and the `X-Xsrftoken` header, reruns the script
with the uploader's widget state and waits for the prediction to be rendered. Bounded: --sessions sessions x
--rounds uploads each (each upload a new case: the image plus a unique trailer after its end), and a
--timeout per step. Reports errors, latency percentiles and the server's peak
memory (its VmHWM, when the script started it or --pid names it). Traffic stays on the loopback interface.

    .venv/bin/python scripts/loadtest.py --image IMG [--sessions 6] [--rounds 3]
    .venv/bin/python scripts/loadtest.py --image IMG --url http://127.0.0.1:8501 [--pid PID]

The app must be in local mode (no sign-in): a session of a server with sign-in sees the sign-in page only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import FileUploaderState, FileURLsRequest, UploadedFileInfo
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from brainclf.presentation import case_ref, content_hash  # noqa: E402
from brainclf.serving import child_pids, free_port, peak_rss_bytes, start_streamlit, stop, wait_healthy  # noqa: E402

XSRF_COOKIE = "_streamlit_xsrf"  # streamlit/web/server/starlette/starlette_server_config.py


def xsrf_token(url: str, timeout: float) -> str | None:
    """The XSRF cookie a server sets on /_stcore/health (as the browser's first request gets it), or None when
    the server runs without XSRF protection. Its value is also the token: Streamlit compares the token bytes
    of the header (or websocket subprotocol) with those of the cookie."""
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
        for header in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            if name.strip() == XSRF_COOKIE:
                return rest.split(";", 1)[0].strip()
    return None


class Session:
    """One browser-less client session, with its own XSRF cookie."""

    def __init__(self, url: str, timeout: float):
        self.url, self.timeout = url, timeout
        self.xsrf = xsrf_token(url, timeout)
        headers = {"Origin": url}
        if self.xsrf:
            headers["Cookie"] = f"{XSRF_COOKIE}={self.xsrf}"
        self._conn = connect(url.replace("http", "ws", 1) + "/_stcore/stream",
                             subprotocols=["streamlit", self.xsrf] if self.xsrf else ["streamlit"],
                             additional_headers=headers, open_timeout=timeout, max_size=None)
        self.ws = self._conn.__enter__()
        self.session_id = ""
        self.uploader_id = ""

    def close(self):
        self._conn.__exit__(None, None, None)

    def _send(self, msg: BackMsg):
        self.ws.send(msg.SerializeToString())

    def _receive_until(self, done) -> list[ForwardMsg]:
        msgs, deadline = [], time.perf_counter() + self.timeout
        while time.perf_counter() < deadline:
            raw = self.ws.recv(timeout=max(0.1, deadline - time.perf_counter()))
            m = ForwardMsg()
            m.ParseFromString(raw)
            msgs.append(m)
            kind = m.WhichOneof("type")
            if kind == "new_session":
                self.session_id = m.new_session.initialize.session_id or self.session_id
            if kind == "delta" and m.delta.WhichOneof("type") == "new_element":
                el = m.delta.new_element
                if el.WhichOneof("type") == "file_uploader":
                    self.uploader_id = el.file_uploader.id
            if done(m):
                return msgs
        raise TimeoutError("no answer from the app in time")

    def run_page(self, page: str, widget_states: list[WidgetState] | None = None) -> list[ForwardMsg]:
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_name = page
        if widget_states:
            msg.rerun_script.widget_states.widgets.extend(widget_states)
        self._send(msg)
        # A run that ends in st.rerun (the first request of a fresh server is routed through app.py that way)
        # finishes early; wait for the run that draws the page.
        return self._receive_until(lambda m: m.WhichOneof("type") == "script_finished"
                                   and m.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN)

    def upload(self, name: str, data: bytes) -> UploadedFileInfo:
        req = BackMsg()
        req.file_urls_request.CopyFrom(FileURLsRequest(request_id=str(uuid.uuid4()), file_names=[name],
                                                       session_id=self.session_id))
        self._send(req)
        resp = self._receive_until(lambda m: m.WhichOneof("type") == "file_urls_response")[-1].file_urls_response
        urls = resp.file_urls[0]
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        upload_url = urls.upload_url if urls.upload_url.startswith("http") else self.url + urls.upload_url
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        if self.xsrf:  # the double-submit pair Streamlit checks on every upload
            headers.update({"X-Xsrftoken": self.xsrf, "Cookie": f"{XSRF_COOKIE}={self.xsrf}"})
        req = urllib.request.Request(upload_url, data=body, method="PUT", headers=headers)
        urllib.request.urlopen(req, timeout=self.timeout).read()
        return UploadedFileInfo(name=name, size=len(data), file_id=urls.file_id, file_urls=urls)

    def predict(self, name: str, data: bytes) -> str:
        info = self.upload(name, data)
        state = WidgetState(id=self.uploader_id)
        state.file_uploader_state_value.CopyFrom(FileUploaderState(uploaded_file_info=[info]))
        msgs = self.run_page("predict", [state])
        texts = [m.delta.new_element.markdown.body for m in msgs
                 if m.WhichOneof("type") == "delta" and m.delta.WhichOneof("type") == "new_element"
                 and m.delta.new_element.WhichOneof("type") == "markdown"]
        heading = f"#### Case {case_ref(content_hash(data))}:"  # a case is headed by its id, not its file name
        result = next((t for t in texts if t.startswith(heading)), None)
        if result is None:
            errors = [m.delta.new_element.alert.body for m in msgs if m.WhichOneof("type") == "delta"
                      and m.delta.WhichOneof("type") == "new_element"
                      and m.delta.new_element.WhichOneof("type") == "alert"]
            raise RuntimeError(f"no prediction rendered; alerts: {errors[:2]}")
        return result


def worker(url: str, image: Path, rounds: int, timeout: float, out: list, errors: list, barrier):
    try:
        s = Session(url, timeout)
        s.run_page("predict")
        if not s.uploader_id:
            raise RuntimeError("the Predict page has no file uploader (is a model available?)")
    except Exception as e:  # noqa: BLE001 - a load test counts failures instead of stopping
        errors.append(f"connect: {type(e).__name__}: {e}")
        barrier.abort()
        return
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        s.close()
        return
    data = image.read_bytes()
    for r in range(rounds):
        t = time.perf_counter()
        try:
            # A few bytes after the image's end make every upload a new case: the app keeps each session's
            # results by content, so the same bytes again would be answered from the session's case book.
            s.predict(f"load_{r}_{image.name}", data + f"\n{uuid.uuid4().hex}".encode())
            out.append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001
            errors.append(f"round {r}: {type(e).__name__}: {e}")
    s.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, help="image to upload in every session")
    p.add_argument("--sessions", type=int, default=6, help="simultaneous sessions (max 32)")
    p.add_argument("--rounds", type=int, default=3, help="uploads per session (max 20)")
    p.add_argument("--timeout", type=float, default=120, help="seconds per step")
    p.add_argument("--url", help="an app already running on 127.0.0.1 (default: start one, XSRF protection on)")
    p.add_argument("--pid", type=int, help="with --url: the server's process id, to report its peak memory")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    sessions, rounds = min(a.sessions, 32), min(a.rounds, 20)  # bounded by design
    proc, pid = None, a.pid
    if a.url:
        if not a.url.startswith(("http://127.", "http://localhost")):
            p.error("--url must be on the loopback interface")
        url = a.url.rstrip("/")
    else:
        port = free_port()
        proc = start_streamlit(port)  # a normal server: XSRF protection on
        pid, url = proc.pid, f"http://127.0.0.1:{port}"
    try:
        ready = wait_healthy(url, proc=proc)
        latencies, errors = [], []
        barrier = threading.Barrier(sessions)
        threads = [threading.Thread(target=worker, args=(url, Path(a.image), rounds, a.timeout, latencies, errors,
                                                         barrier)) for _ in range(sessions)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(a.timeout * (rounds + 2))
        wall = time.perf_counter() - t0
        peak = peak_rss_bytes(pid) if pid else None
        # The models run in a child process (brainclf.inference.inference_process): its memory counts too.
        children = [m for c in child_pids(pid) if (m := peak_rss_bytes(c))] if pid else []
    finally:
        if proc:
            stop(proc)
    lat = np.array(latencies) * 1000
    res = {"sessions": sessions, "rounds": rounds, "requests": sessions * rounds, "ok": len(latencies),
           "errors": errors, "server_ready_s": ready, "wall_s": wall,
           "server_peak_rss_mb": round(peak / 2**20, 1) if peak else None,
           "model_process_peak_rss_mb": round(sum(children) / 2**20, 1) if children else None,
           "latency_ms": {q: float(np.percentile(lat, int(q[1:]))) for q in ("p50", "p90", "p95", "p99")}
           if len(lat) else {}}
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        _print_summary(res, url)
    return 0 if not errors else 1


def _print_summary(res: dict, url: str) -> None:
    """main's result in words: requests, latencies, peak memory, the first errors."""
    print(f"{res['sessions']} sessions x {res['rounds']} uploads against {url}: {res['ok']}/{res['requests']} ok, "
          f"{len(res['errors'])} errors, wall {res['wall_s']:.1f} s")
    if res["latency_ms"]:
        print("upload-to-rendered-prediction latency: " + ", ".join(f"{k} {v:.0f} ms"
                                                                     for k, v in res["latency_ms"].items()))
    if res["server_peak_rss_mb"]:
        model_process = res["model_process_peak_rss_mb"]
        print(f"server peak memory (VmHWM): {res['server_peak_rss_mb']:.0f} MB"
              + (f", its model process {model_process:.0f} MB" if model_process else ""))
    for e in res["errors"][:10]:
        print("  error:", e)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
