#!/usr/bin/python3
"""The live Prometheus endpoint (--metrics, threads/metrics.cpp), end to end, as a scraper sees it.

Broker, workers and clients run as separate processes over tcp on loopback, each with --metrics
(and `zyolo run` as one), and the test scrapes them over HTTP:
  * every scrape parses (prometheus_client's parser) and `promtool check metrics` accepts each
    process's text without a word; counters never shrink between two scrapes of one process;
    histogram buckets are cumulative and +Inf equals _count;
  * the counters follow the requests while the clients run, and once they end they match the
    clients' report: the clients' duration histogram, the broker's answered requests and queue
    waits, and the workers' served requests all count the report's answered requests;
  * /readyz turns 503 when a service's last worker is killed and 200 when a worker comes back;
  * bad HTTP (garbage, a 1 MB head, POST, half requests, 50 connections at once, pipelining,
    HTTP/1.0, a client that never reads) is answered or dropped as documented, counted, and
    costs the fleet nothing;
  * scrapers that hang up as soon as they have their answer are all answered (the endpoint once
    stopped answering anyone when its close of a connection raced the peer's);
  * beyond metrics.max_connections a connection is closed at once, and counted;
  * a bad --metrics value, or a port already taken, stops the process with a clear error.

Run by /usr/bin/python3 (Debian's python3-prometheus-client is installed for it):
    /usr/bin/python3 tests/test_scrape.py PATH/TO/zyolo [unittest arguments]
CTest runs it (tests/CMakeLists.txt). It fails, never skips, when promtool or the module is missing.
"""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

PROMTOOL = "/usr/bin/promtool"
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:  # a failure, not a skip: the checks below need it
    sys.exit(f"test_scrape: cannot import prometheus_client ({e}); install Debian's "
             f"python3-prometheus-client (scripts/deps) and run this with /usr/bin/python3")
if not os.access(PROMTOOL, os.X_OK):
    sys.exit(f"test_scrape: {PROMTOOL} is missing; install Debian's prometheus (scripts/deps)")

ZYOLO = None  # the binary under test: the first argument
SANITIZER = os.environ.get("ZYOLO_TEST_SANITIZER", "")  # CTest sets it: "", thread or address
DEADLINE_S = 20.0 if SANITIZER else 10.0  # the bound of every wait for a condition
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Short heartbeats, so that the broker expires a killed worker within 0.6 s; a short idle timeout,
# so that a half-sent request is dropped quickly. Every process of a test reads the same file.
CONFIG = """
[broker]
heartbeat_ms = 200
liveness = 3
[metrics]
refresh_ms = 50
idle_timeout_ms = 1000
"""


def free_port():
    """A tcp port free on loopback now (another process may take it before we do: a tiny race)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, condition, deadline_s=DEADLINE_S, every_s=0.02):
    """Polls `condition` (an observable state, never a stand-in for one) until it returns a true
    value, which it returns; an AssertionError naming `what` when the deadline passes."""
    end = time.monotonic() + deadline_s
    last = None
    while True:
        try:
            last = condition()
        except (OSError, ValueError) as e:  # e.g. not listening yet
            last = None
            err = e
        else:
            err = None
            if last:
                return last
        if time.monotonic() >= end:
            raise AssertionError(f"waited {deadline_s} s for {what}; last: {last!r} {err or ''}")
        time.sleep(every_s)


def clip(text, head=12000, tail=3000):
    """A long text's beginning (where a sanitizer's report starts) and end."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n[... {len(text) - head - tail} characters ...]\n{text[-tail:]}"


class Process:
    """A zyolo process whose stdout and stderr are collected; SIGKILLed at the end of the test, and
    if this test dies first (setpriv sets the parent-death signal, as tests/process.hpp does).
    Start it from the main thread: the parent-death signal follows the thread that started it."""

    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.out = ""
        self.err = tempfile.TemporaryFile()
        self.lock = threading.Condition()
        self.proc = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", ZYOLO] + args,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.err)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            with self.lock:
                self.out += line.decode(errors="replace")
                self.lock.notify_all()
        with self.lock:  # stdout closed: a waiter need not wait out its deadline
            self.lock.notify_all()

    def wait_for(self, text, deadline_s=DEADLINE_S):
        end = time.monotonic() + deadline_s
        with self.lock:
            while text not in self.out:
                left = end - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(f"{self.name} did not say {text!r}\n{self.diagnostics()}")
                self.lock.wait(min(left, 0.1))

    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, deadline_s=DEADLINE_S):
        try:
            code = self.proc.wait(deadline_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not end within {deadline_s} s\n{self.diagnostics()}")
        self.reader.join(deadline_s)
        return code

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def diagnostics(self):
        with self.lock:
            out = self.out
        return (f"--- {self.name}: zyolo {' '.join(self.args)} (exit {self.proc.poll()})\n"
                f"stdout:\n{clip(out)}\nstderr:\n{clip(self.stderr())}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()
        self.err.close()


# ---------------------------------------------------------------------------------------------
# HTTP, by hand: the requests a scraper sends and those it should not.

class Conn:
    """One tcp connection to a metrics endpoint, reading responses one at a time."""

    def __init__(self, port, timeout_s=DEADLINE_S):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"the server closed the connection; unread: {self.buf[:200]!r}")
        self.buf += data

    def response(self, head_only=False):
        """(status, headers with lower-case names, body) of the next response."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status, _ = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", f"status line {lines[0]!r}"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        assert "content-length" in headers, f"no Content-Length in {lines!r}"
        length = 0 if head_only else int(headers["content-length"])
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status), headers, body.decode()

    def closed_by_server(self, deadline_s=DEADLINE_S):
        """Whether the server closes this connection within the deadline, sending nothing more."""
        self.sock.settimeout(deadline_s)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return self.buf == b""
                self.buf += data
        except ConnectionResetError:
            return self.buf == b""
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def get(port, path, method="GET"):
    """(status, headers, body) of one request on a connection of its own."""
    c = Conn(port)
    try:
        c.send(f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        return c.response(head_only=method == "HEAD")
    finally:
        c.close()


def status_body(port, path):
    status, _, body = get(port, path)
    return status, body


# ---------------------------------------------------------------------------------------------
# What a scrape must be.

class Scrape:
    """One parsed /metrics: samples by (name, sorted labels), and each family's type."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        try:
            for family in text_string_to_metric_families(text):
                self.types[family.name] = family.type
                for s in family.samples:
                    key = (s.name, tuple(sorted(s.labels.items())))
                    if key in self.samples:
                        raise ValueError(f"sample {key} twice")
                    self.samples[key] = (s.value, family.type)
        except Exception as e:
            raise AssertionError(f"/metrics does not parse ({type(e).__name__}: {e}):\n{text}")

    def value(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        if key not in self.samples:
            raise AssertionError(f"no sample {name}{labels} in:\n{self.text}")
        return self.samples[key][0]

    def total(self, name, default=None, **labels):
        """The sum of every sample of `name` whose labels include `labels`; `default` if there is
        none (an AssertionError if that is None)."""
        found = [v for (n, ls), (v, _) in self.samples.items()
                 if n == name and all(dict(ls).get(k) == w for k, w in labels.items())]
        if not found:
            if default is not None:
                return default
            raise AssertionError(f"no sample {name}{labels} in:\n{self.text}")
        return sum(found)

    def check_histograms(self):
        """Each histogram's buckets: ascending bounds, cumulative counts, +Inf == _count."""
        series = {}
        for (name, labels), (v, kind) in self.samples.items():
            if kind == "histogram" and name.endswith("_bucket"):
                d = dict(labels)
                le = d.pop("le")
                series.setdefault((name[:-len("_bucket")], tuple(sorted(d.items()))), []).append((le, v))
        for (name, labels), buckets in series.items():
            where = f"{name}{dict(labels)}"
            bounds = [float(le) for le, _ in buckets]
            assert bounds == sorted(bounds) and bounds[-1] == float("inf"), f"{where}: bounds {bounds}"
            counts = [v for _, v in sorted(buckets, key=lambda b: float(b[0]))]
            assert all(a <= b for a, b in zip(counts, counts[1:])), f"{where}: not cumulative {counts}"
            count = self.value(name + "_count", **dict(labels))
            assert counts[-1] == count, f"{where}: +Inf {counts[-1]} != _count {count}"
            assert self.value(name + "_sum", **dict(labels)) >= 0, where
        return len(series)


class Endpoint:
    """A process's metrics endpoint: every scrape is checked, and its counters never shrink."""

    def __init__(self, name, port):
        self.name, self.port = name, port
        self.last = None
        self.scrapes = 0

    def scrape(self):
        status, headers, body = get(self.port, "/metrics")
        assert status == 200, f"{self.name} /metrics: {status} {body}"
        assert headers["content-type"] == CONTENT_TYPE, headers
        assert int(headers["content-length"]) == len(body.encode())
        s = Scrape(body)
        s.check_histograms()
        if self.last:
            for key, (v, kind) in self.last.samples.items():
                if kind in ("counter", "histogram") and key in s.samples:
                    assert s.samples[key][0] >= v, (
                        f"{self.name}: {key} went down from {v} to {s.samples[key][0]}\n{s.text}")
        self.last = s
        self.scrapes += 1
        return s

    def until(self, what, condition, deadline_s=DEADLINE_S):
        """Scrapes until condition(scrape) holds; that scrape. On the deadline, the failure shows
        the last scrape."""
        try:
            return wait_until(f"{self.name}: {what}", lambda: (lambda s: s if condition(s) else None)(self.scrape()),
                              deadline_s, every_s=0.05)
        except AssertionError as e:
            last = self.last.text if self.last else "(none)"
            raise AssertionError(f"{e}\n--- the last scrape of {self.name}:\n{clip(last)}") from None

    def promtool(self):
        """`promtool check metrics` on a fresh scrape: exit 0 and not a word (no lint warning)."""
        text = self.scrape().text
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True,
                           timeout=DEADLINE_S)
        said = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode == 0 and said == "", (
            f"promtool check metrics on {self.name}'s text: exit {r.returncode}:\n{said}\n--- text:\n{text}")

    def readyz(self):
        status, _, body = get(self.port, "/readyz")
        return status, body.strip()


class Fleet:
    """The processes of one test, with the config file they share; everything is killed at the
    end, and if the test failed, each process's command, stdout and stderr are printed."""

    def __init__(self, config_extra=""):
        self.dir = tempfile.mkdtemp(prefix="zyolo-test-metrics-")
        self.config = os.path.join(self.dir, "config.toml")
        with open(self.config, "w") as f:
            f.write(CONFIG + config_extra)
        self.processes = []
        self.frontend = f"tcp://127.0.0.1:{free_port()}"
        self.backend = f"tcp://127.0.0.1:{free_port()}"
        self.control = f"tcp://127.0.0.1:{free_port()}"

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None:
            for p in self.processes:
                print(p.diagnostics(), file=sys.stderr)
        for p in self.processes:
            p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def start(self, name, args, ready=True):
        p = Process(name, args)
        self.processes.append(p)
        if ready:
            p.wait_for("ready")
        return p

    def broker(self):
        port = free_port()
        p = self.start("broker", ["broker", "--config", self.config, "--frontend", self.frontend,
                                  "--backend", self.backend, "--control", self.control,
                                  "--metrics", f"127.0.0.1:{port}"])
        return p, Endpoint("broker", port)

    def workers(self, n=2, service_ms=1, name="workers"):
        port = free_port()
        p = self.start(name, ["workers", "--config", self.config, "--connect", self.backend,
                              "--workers", str(n), "--model", "none", "--service-ms", str(service_ms),
                              "--metrics", f"127.0.0.1:{port}"])
        return p, Endpoint(name, port)

    def clients(self, requests, clients=4, metrics=True):
        port = free_port()
        report = os.path.join(self.dir, "report.json")
        args = ["clients", "--config", self.config, "--connect", self.frontend, "--clients", str(clients),
                "--requests", str(requests), "--model", "none", "--report", report, "--quiet"]
        if metrics:
            args += ["--metrics", f"127.0.0.1:{port}"]
        p = self.start("clients", args, ready=False)
        return p, Endpoint("clients", port), report


def load_report(path):
    with open(path) as f:
        return json.load(f)


def check_nothing_lost(test, report, requests):
    q = report["requests"]
    test.assertEqual(q["answered"], requests, q)
    test.assertEqual(q["sent"], requests, q)
    for k in ("lost", "errors", "duplicates_delivered", "mismatched", "wrong_service"):
        test.assertEqual(q[k], 0, f"{k}: {q}")
    test.assertEqual(report["actor_errors"], [])


def served_counts(report):
    """What the broker and the workers may have counted for the report's requests: each request
    answered once; a request sent again after its timeout (Lazy Pirate) may have been served twice,
    its second answer dropped by the client. So exactly the answered count when none was retried,
    and at most one more per retry otherwise."""
    q = report["requests"]
    return q["answered"], q["answered"] + q["retries"]


def ended(endpoint):
    """The clients' (or run's) endpoint says the run has ended: the values it serves are final."""
    return endpoint.readyz() == (503, "the run has ended")


# ---------------------------------------------------------------------------------------------

class MetricsTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.started = time.monotonic()

    def tearDown(self):
        print(f"[{time.monotonic() - self.started:.1f} s] ", end="", file=sys.stderr, flush=True)

    def assertBetween(self, value, least, most, report, text):
        """A count of served requests against the report's (served_counts)."""
        if not least <= value <= most:
            self.fail(f"{value} requests counted; the report answered {least} with "
                      f"{most - least} retries ({report['requests']}):\n{text}")

    def test_counters_follow_the_requests_and_match_the_report(self):
        """Separate processes: mid-run the counters grow; at the end each process's counts are the
        report's answered requests, and promtool accepts every process's text."""
        requests = 1500
        with Fleet("linger_ms = 30000\n") as fleet:  # the clients serve their final values until SIGTERM
            broker_p, broker = fleet.broker()
            workers_p, workers = fleet.workers(n=2, service_ms=2)
            wait_until("the broker ready", lambda: broker.readyz()[0] == 200)
            clients_p, clients, report = fleet.clients(requests)

            # Mid-run, two scrapes of each process apart: the answered requests grow, never shrink
            # (Endpoint.scrape fails on any counter that shrinks).
            answered = lambda s: s.value("zyolo_requests_total", service="yolo", status="200")
            first = broker.until("requests answered", lambda s: answered(s) > 0)
            broker.until("more requests answered", lambda s: answered(s) > answered(first))
            c_answered = lambda s: s.total("zyolo_client_requests_total", 0, status="200")
            c_first = clients.until("the clients' answers", lambda s: c_answered(s) > 0)
            c_second = clients.until("more of the clients' answers", lambda s: c_answered(s) > c_answered(c_first))
            self.assertEqual(c_second.value("zyolo_clients_running"), 4)
            self.assertEqual(clients.readyz(), (200, "ready"))
            w_served = lambda s: s.total("zyolo_worker_requests_total", 0, status="200")
            w_first = workers.until("requests served", lambda s: w_served(s) > 0)
            workers.until("more requests served", lambda s: w_served(s) > w_served(w_first))
            self.assertTrue(clients_p.running(), "the clients ended before the mid-run scrapes: make the run longer")
            for e in (broker, workers, clients):
                e.promtool()

            # The run over, the clients linger, serving their final values.
            wait_until("the clients' run to end", lambda: ended(clients))
            final = clients.scrape()
            clients.promtool()
            clients_p.signal(signal.SIGTERM)  # ends the linger at once
            self.assertEqual(clients_p.wait(), 0, clients_p.diagnostics())
            j = load_report(report)
            check_nothing_lost(self, j, requests)
            n = j["requests"]["answered"]
            least, most = served_counts(j)
            self.assertEqual(final.value("zyolo_client_request_duration_seconds_count", service="yolo"), n)
            self.assertEqual(final.value("zyolo_client_requests_total", service="yolo", status="200"), n)
            self.assertEqual(final.value("zyolo_client_lost_total", service="yolo"), 0)
            self.assertEqual(final.value("zyolo_client_retries_total", service="yolo"), j["requests"]["retries"])
            self.assertEqual(final.value("zyolo_clients_running"), 0)

            # The broker's and the workers' counters catch up within a refresh or two.
            b = broker.until(f"{least} answered requests", lambda s: answered(s) >= least)
            self.assertBetween(answered(b), least, most, j, b.text)
            self.assertEqual(b.total("zyolo_requests_total", service="yolo"), answered(b), b.text)
            # The queue-wait histogram counts every request handed to a worker.
            dispatched = b.value("zyolo_requests_queued_total", service="yolo") + b.value("zyolo_requeued_total")
            self.assertEqual(b.value("zyolo_queue_wait_seconds_count", service="yolo"), dispatched, b.text)
            self.assertBetween(dispatched, least, most, j, b.text)
            self.assertEqual(b.value("zyolo_queue_depth", service="yolo"), 0)
            w = workers.until(f"{least} served", lambda s: w_served(s) >= least)
            self.assertBetween(w_served(w), least, most, j, w.text)
            self.assertEqual(w.total("zyolo_worker_registered"), 2, w.text)
            self.assertEqual(w.value("zyolo_pool_workers", service="yolo"), 2, w.text)
            for e in (broker, workers):
                e.promtool()
            for s in (final, b, w):  # one build_info, 1, with the transport the processes take
                info = [(dict(ls), v) for (nm, ls), (v, _) in s.samples.items() if nm == "zyolo_build_info"]
                self.assertEqual(len(info), 1, s.text)
                self.assertEqual(info[0][1], 1)
                self.assertEqual(info[0][0]["transport"], "tcp")
                self.assertEqual(sorted(info[0][0]), ["allocator", "transport", "version"])

            workers_p.signal(signal.SIGTERM)
            self.assertEqual(workers_p.wait(), 0)
            broker_p.signal(signal.SIGTERM)
            self.assertEqual(broker_p.wait(), 0)

    def test_zyolo_run_serves_its_final_counts_while_it_lingers(self):
        """`zyolo run --metrics`: ready while its workers are registered; after the run, the final
        values until SIGTERM, equal to the report's."""
        requests = 600
        with Fleet("linger_ms = 30000\n") as fleet:
            port = free_port()
            report = os.path.join(fleet.dir, "run.json")
            run_p = fleet.start("run", ["run", "--config", fleet.config, "--transport", "inproc", "--model", "none",
                                        "--clients", "2", "--workers", "2", "--service-ms", "2", "--requests",
                                        str(requests), "--report", report, "--quiet",
                                        "--metrics", f"127.0.0.1:{port}"], ready=False)
            run = Endpoint("run", port)
            wait_until("zyolo run ready", lambda: run.readyz() == (200, "ready"))
            answered = lambda s: s.value("zyolo_requests_total", service="yolo", status="200")
            first = run.until("requests answered", lambda s: answered(s) > 0)
            run.until("more requests answered", lambda s: answered(s) > answered(first))
            run.promtool()
            wait_until("the run to end", lambda: ended(run))
            s = run.scrape()
            run.promtool()
            self.assertEqual(status_body(port, "/healthz"), (200, "ok\n"))
            run_p.signal(signal.SIGTERM)
            self.assertEqual(run_p.wait(), 0, run_p.diagnostics())
            j = load_report(report)
            check_nothing_lost(self, j, requests)
            least, most = served_counts(j)
            self.assertEqual(s.value("zyolo_client_request_duration_seconds_count", service="yolo"),
                             j["requests"]["answered"], s.text)
            self.assertBetween(answered(s), least, most, j, s.text)
            self.assertBetween(s.value("zyolo_queue_wait_seconds_count", service="yolo"), least, most, j, s.text)
            self.assertBetween(s.total("zyolo_worker_requests_total", status="200"), least, most, j, s.text)
            self.assertEqual(s.value("zyolo_broker_up"), 0, s.text)  # stopped with the run
            self.assertEqual(s.value("zyolo_clients_running"), 0, s.text)

    def test_readyz_follows_the_workers(self):
        """The broker's /readyz: 503 once the last worker of its service is gone (killed, then
        expired after heartbeat x liveness), 200 again when a new one registers. The workers'
        own: 200 while registered, 503 once their broker is gone."""
        with Fleet() as fleet:
            broker_p, broker = fleet.broker()
            self.assertEqual(status_body(broker.port, "/healthz"), (200, "ok\n"))
            self.assertEqual(broker.readyz(), (503, "service 'yolo' has no worker registered with the broker"))
            workers_p, workers = fleet.workers(n=1, name="workers-1")
            wait_until("the broker ready", lambda: broker.readyz() == (200, "ready"))
            wait_until("the workers ready", lambda: workers.readyz() == (200, "ready"))
            self.assertEqual(status_body(workers.port, "/healthz"), (200, "ok\n"))

            workers_p.signal(signal.SIGKILL)
            self.assertEqual(workers_p.wait(), -signal.SIGKILL)
            status, body = wait_until("the broker not ready", lambda: (lambda r: r if r[0] == 503 else None)(broker.readyz()))
            self.assertEqual(body, "service 'yolo' has no worker registered with the broker")
            s = broker.scrape()
            self.assertGreaterEqual(s.value("zyolo_worker_expired_total"), 1, s.text)
            self.assertEqual(s.total("zyolo_workers", service="yolo"), 0, s.text)
            self.assertEqual(status_body(broker.port, "/healthz"), (200, "ok\n"))  # not ready, yet healthy

            workers_p, workers = fleet.workers(n=1, name="workers-2")
            wait_until("the broker ready again", lambda: broker.readyz() == (200, "ready"))
            wait_until("the new workers ready", lambda: workers.readyz() == (200, "ready"))
            s = broker.scrape()
            self.assertEqual(s.total("zyolo_workers", service="yolo"), 1, s.text)
            broker.promtool()

            # The broker killed: its workers are no longer registered with one.
            broker_p.signal(signal.SIGKILL)
            broker_p.wait()
            status, body = wait_until("the workers not ready",
                                      lambda: (lambda r: r if r[0] == 503 else None)(workers.readyz()))
            self.assertEqual(body, "no worker of service 'yolo' is registered with a broker")
            w = workers.scrape()
            self.assertEqual(w.total("zyolo_worker_registered"), 0, w.text)
            workers.promtool()
            workers_p.signal(signal.SIGTERM)
            self.assertEqual(workers_p.wait(), 0)

    def answered_and_closed(self, port, request, status):
        """Sends one bad request on a new connection: answered `status`, then closed by the server.
        Returns the answer's headers."""
        c = Conn(port)
        c.send(request)
        got, headers, body = c.response()
        self.assertEqual(got, status, body)
        self.assertEqual(headers.get("connection"), "close")
        self.assertTrue(c.closed_by_server(), f"the connection stayed open after {status}")
        c.close()
        return headers

    def test_bad_http_costs_the_fleet_nothing(self):
        """While clients run a fixed number of requests, the broker's endpoint gets everything a
        scraper should not send, and much of what it may; every request is still answered, and
        the endpoint counts what it answered and what it dropped."""
        requests = 1500
        big_heads = 2 if SANITIZER else 10
        with Fleet() as fleet:
            broker_p, broker = fleet.broker()
            workers_p, workers = fleet.workers(n=2, service_ms=5)
            wait_until("the broker ready", lambda: broker.readyz()[0] == 200)
            clients_p, _, report = fleet.clients(requests, metrics=False)
            broker.until("requests answered", lambda s: s.value("zyolo_requests_total", service="yolo", status="200") > 0)
            port = broker.port

            # Garbage: 400 and closed.
            self.answered_and_closed(port, b"\x00\x01\xfe\xffgarbage \x7f\r\nmore: stuff\r\n\r\n", 400)

            # A 1 MB head: 431 and closed once it passes metrics.max_header_bytes; the broker
            # holds no more of it than that (its resident memory does not follow what was sent).
            rss_before = resident_bytes(broker_p.proc.pid)
            for _ in range(big_heads):
                status, head, body = send_big_head(port, 1 << 20)
                self.assertEqual(status, 431, body)
                self.assertIn("\r\nConnection: close", head)
            rss_growth = resident_bytes(broker_p.proc.pid) - rss_before
            if not SANITIZER:  # AddressSanitizer keeps what is freed in a quarantine of up to 256 MB
                self.assertLess(rss_growth, 4 << 20, f"the broker grew by {rss_growth} bytes "
                                f"taking {big_heads} heads of 1 MB")

            # POST: 405 with Allow, and closed.
            headers = self.answered_and_closed(
                port, b"POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello", 405)
            self.assertEqual(headers.get("allow"), "GET, HEAD")

            # Half a request, then gone: dropped (closed_mid_request).
            c = Conn(port)
            c.send(b"GET /metr")
            c.close()

            # Half a request, left open: closed by the server after metrics.idle_timeout_ms.
            c = Conn(port)
            c.send(b"GET /metrics HTTP/1.1\r\nHost: te")
            started = time.monotonic()
            self.assertTrue(c.closed_by_server(), "a half request stayed open, or was answered")
            self.assertGreaterEqual(time.monotonic() - started, 0.9)  # idle_timeout_ms 1000 (less ~0.1 s sent)
            c.close()

            # 50 connections at once, each asking for /metrics: every one answered 200, each parses.
            conns = [Conn(port) for _ in range(50)]
            for c in conns:
                c.send(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            for c in conns:
                status, headers, body = c.response()
                self.assertEqual(status, 200, body)
                self.assertEqual(headers["content-type"], CONTENT_TYPE)
                Scrape(body).check_histograms()
                c.close()

            # A client that pipelines requests and reads nothing: answered until the answers it has
            # not taken fill its queue (metrics' sndhwm, past what the kernel holds), then closed
            # and counted (send_failed); the others are served meanwhile.
            greedy = Conn(port)
            greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            greedy.send(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n" * 5000)
            broker.until("the greedy client dropped",
                         lambda s: s.value("zyolo_http_dropped_total", reason="send_failed") == 1)
            greedy.close()

            # HEAD: the head with its Content-Length, and no body: the next response on the same
            # connection begins right after the head.
            c = Conn(port)
            c.send(b"HEAD /metrics HTTP/1.1\r\nHost: test\r\n\r\nGET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            status, headers, _ = c.response(head_only=True)
            self.assertEqual(status, 200)
            self.assertEqual(headers["content-type"], CONTENT_TYPE)
            self.assertGreater(int(headers["content-length"]), 1000)
            self.assertEqual(c.response()[::2], (200, "ok\n"))

            # Keep-alive: two requests sent at once, answered in order; a third still answered.
            c.send(b"GET /readyz HTTP/1.1\r\nHost: test\r\n\r\nGET /metrics?x=1 HTTP/1.1\r\nHost: test\r\n\r\n")
            self.assertEqual(c.response()[::2], (200, "ready\n"))
            status, _, body = c.response()
            self.assertEqual(status, 200)
            Scrape(body)
            # Not found: 404, and the connection stays open for the next.
            c.send(b"GET /nothing-here HTTP/1.1\r\nHost: test\r\n\r\n")
            self.assertEqual(c.response()[0], 404)
            c.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            status, headers, body = c.response()
            self.assertEqual((status, body, headers.get("connection")), (200, "ok\n", "close"))
            self.assertTrue(c.closed_by_server(), "Connection: close, yet it stayed open")
            c.close()

            # HTTP/1.0: answered, and closed.
            c = Conn(port)
            c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
            status, headers, body = c.response()
            self.assertEqual((status, body, headers.get("connection")), (200, "ok\n", "close"))
            self.assertTrue(c.closed_by_server(), "HTTP/1.0, yet it stayed open")
            c.close()

            self.assertTrue(clients_p.running(), "the clients ended before the bad input did: make the run longer")
            self.assertEqual(clients_p.wait(60 if SANITIZER else 30), 0, clients_p.diagnostics())
            check_nothing_lost(self, load_report(report), requests)

            j = load_report(report)
            least, most = served_counts(j)
            s = broker.until("every request answered", lambda s: s.value(
                "zyolo_requests_total", service="yolo", status="200") >= least)
            self.assertEqual(s.value("zyolo_http_responses_total", code="400"), 1, s.text)
            self.assertEqual(s.value("zyolo_http_responses_total", code="431"), big_heads, s.text)
            self.assertEqual(s.value("zyolo_http_responses_total", code="405"), 1, s.text)
            self.assertEqual(s.value("zyolo_http_responses_total", code="404"), 1, s.text)
            self.assertGreaterEqual(s.value("zyolo_http_responses_total", code="200"), 100, s.text)
            self.assertEqual(s.value("zyolo_http_dropped_total", reason="closed_mid_request"), 1, s.text)
            self.assertEqual(s.value("zyolo_http_dropped_total", reason="slow_request"), 1, s.text)
            self.assertEqual(s.value("zyolo_http_dropped_total", reason="overflow"), 0, s.text)
            self.assertEqual(s.value("zyolo_http_dropped_total", reason="send_failed"), 1, s.text)
            self.assertEqual(s.value("zyolo_http_connections"), 1, s.text)  # this scrape's
            self.assertBetween(s.value("zyolo_requests_total", service="yolo", status="200"), least, most, j, s.text)
            broker.promtool()
            self.assertEqual(status_body(port, "/healthz"), (200, "ok\n"))
            workers_p.signal(signal.SIGTERM)
            self.assertEqual(workers_p.wait(), 0)
            broker_p.signal(signal.SIGTERM)
            self.assertEqual(broker_p.wait(), 0)

    def test_scrapers_that_hang_up_at_once(self):
        """Scrapers that hang up as soon as they have their answer, so that the endpoint's own close
        (Connection: close) races theirs: it answers every one, and the next."""
        scrapes = 500 if SANITIZER else 1500
        with Fleet() as fleet:
            _, broker = fleet.broker()
            for i in range(scrapes):
                c = Conn(broker.port, timeout_s=5)
                close = b"Connection: close\r\n" if i % 2 else b""
                c.send(b"GET /metrics HTTP/1.1\r\nHost: test\r\n" + close + b"\r\n")
                try:
                    status, _, body = c.response()
                except (OSError, EOFError) as e:
                    self.fail(f"scrape {i} of {scrapes} unanswered: {e!r}")
                finally:
                    c.close()
                self.assertEqual(status, 200)
            s = broker.until("every connection gone", lambda s: s.value("zyolo_http_connections") == 1)
            self.assertGreaterEqual(s.value("zyolo_http_responses_total", code="200"), scrapes, s.text)
            self.assertEqual(s.total("zyolo_http_dropped_total"), 0, s.text)

    def test_too_many_connections_are_closed_as_they_come(self):
        """Beyond metrics.max_connections a connection is closed at once, unanswered, and counted;
        the ones within are served as ever."""
        with Fleet("max_connections = 3\n") as fleet:
            _, workers = fleet.workers(n=1)
            held = [Conn(workers.port) for _ in range(3)]
            for c in held:  # all three known to the endpoint: each answered once
                c.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
                self.assertEqual(c.response()[::2], (200, "ok\n"))
            for _ in range(2):
                c = Conn(workers.port)
                self.assertTrue(c.closed_by_server(), "a connection beyond max_connections was kept")
                c.close()
            held[0].send(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            status, _, body = held[0].response()
            self.assertEqual(status, 200)
            s = Scrape(body)
            self.assertEqual(s.value("zyolo_http_dropped_total", reason="overflow"), 2, s.text)
            self.assertEqual(s.value("zyolo_http_connections"), 3, s.text)
            for c in held:
                c.close()
            s = workers.until("the held connections gone", lambda s: s.value("zyolo_http_connections") == 1)
            self.assertEqual(s.value("zyolo_http_dropped_total", reason="overflow"), 2, s.text)
            workers.promtool()

    def test_bad_metrics_values_stop_the_process_before_it_starts(self):
        """A --metrics that is not HOST:PORT: exit 2 naming metrics.listen, nothing started. A port
        already taken: exit non-zero, 'cannot listen', nothing started."""
        frontend, backend, control = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
        commands = {
            "broker": ["broker", "--frontend", frontend, "--backend", backend, "--control", control],
            "workers": ["workers", "--connect", backend, "--model", "none", "--workers", "1"],
            "clients": ["clients", "--connect", frontend, "--model", "none", "--requests", "1"],
            "run": ["run", "--model", "none", "--transport", "inproc", "--requests", "1"],
        }
        # Every bad value on the broker; one on each other command (they share the check, and each
        # start of the binary takes a while on a loaded machine).
        bad_values = {"broker": ("nohost", "h:0", "tcp://x:1", "127.0.0.1:65536", ":9464", "127.0.0.1:"),
                      "workers": ("tcp://x:1",), "clients": ("h:0",), "run": ("nohost",)}
        for command, args in commands.items():
            for bad in bad_values[command]:
                with self.subTest(command=command, metrics=bad):
                    r = subprocess.run([ZYOLO] + args + ["--metrics", bad], capture_output=True, text=True,
                                       timeout=DEADLINE_S)
                    self.assertEqual(r.returncode, 2, r)
                    self.assertIn(f"metrics.listen (--metrics) '{bad}'", r.stderr)
                    self.assertIn("HOST:PORT", r.stderr)
                    self.assertNotIn("ready", r.stdout)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            for command, args in commands.items():
                with self.subTest(command=command, metrics="taken"):
                    r = subprocess.run([ZYOLO] + args + ["--metrics", f"127.0.0.1:{port}"], capture_output=True,
                                       text=True, timeout=DEADLINE_S)
                    self.assertNotEqual(r.returncode, 0, r)
                    self.assertIn(f"metrics.listen (--metrics) 127.0.0.1:{port}: cannot listen", r.stderr)
                    self.assertNotIn("ready", r.stdout)
                    self.assertNotIn("answered", r.stdout)  # no run happened


def resident_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def send_big_head(port, size):
    """Sends a request head of `size` bytes (one long header) as fast as the server takes it,
    reading at the same time; (status, head, body) once the server has closed. (libzmq reads on
    after the endpoint answered, so most of the head may be taken before the connection closes.)"""
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    data = memoryview(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * size)
    sent, received = 0, b""
    end = time.monotonic() + DEADLINE_S
    try:
        while True:
            if time.monotonic() > end:
                raise AssertionError(f"the server neither answered nor closed: sent {sent}, got {received[:200]!r}")
            readable, writable, _ = select.select([s], [s] if sent < len(data) else [], [], 0.5)
            if readable:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
            if writable:
                try:
                    sent += s.send(data[sent:sent + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    data = data[:sent]  # the server closed: read what it answered, send no more
    finally:
        s.close()
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else None
    return status, head.decode(errors="replace"), body.decode(errors="replace")


if __name__ == "__main__":
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        sys.exit("usage: /usr/bin/python3 tests/test_scrape.py PATH/TO/zyolo [unittest arguments]")
    ZYOLO = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
