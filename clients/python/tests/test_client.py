"""Tests of the Python client against a live server.

Environment: TSNEMAP_URL, the API of a `tsnemap serve --demo` started with
`--submit-rate 1 --submit-burst 2` (ci.sh starts one). The client under test
is the installed package (ci.sh pip-installs it into a virtual environment).
"""

import http.server
import socket
import threading
import time
import unittest

import tsnemap
from tsnemap import (BadRequest, Client, ConnectionFailed, JobFailed, NotFound, ServiceUnavailable,
                     TooManyRequests, WaitTimeout)

SMALL = {"method": "pca", "image_size": {"width": 8, "height": 8}}


class LiveServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = Client()  # $TSNEMAP_URL
        demo = cls.client.demo()
        cls.catalogue = {"dataset_url": demo["dataset_url"], "image_url_template": demo["image_url_template"]}

    def submit(self, **extra):
        return self.client.submit(**self.catalogue, **extra)

    def test_installed_package(self):
        self.assertIn("site-packages", tsnemap.__file__, "tests must run against the pip-installed client")

    def test_pca_round_trip(self):
        job = self.submit(**SMALL)
        self.assertEqual(job["status"], "queued")
        self.assertEqual(job["request"]["perplexity"], 30)
        seen = []
        done = self.client.wait(job["id"], timeout=120, on_progress=lambda j: seen.append(j["stage"]))
        self.assertEqual(done["status"], "succeeded")
        self.assertEqual(seen[-1], "finished")
        self.assertEqual(done["progress"]["rows_dropped"], 2)  # the demo's two rows without an id
        rows = self.client.result_rows(job["id"])
        mapped = [r for r in rows if r["x"] is not None]
        self.assertGreater(len(mapped), 10)
        self.assertTrue(all(isinstance(r["y"], float) for r in mapped))
        self.assertEqual(len(self.client.result(job["id"], "json")["points"]), len(rows))
        self.assertEqual(self.client.map_png(job["id"], 64, 64)[:8], b"\x89PNG\r\n\x1a\n")
        self.assertIn(job["id"], [j["id"] for j in self.client.jobs()])
        self.assertIsNone(self.client.cancel(job["id"]))  # finished: deleted
        with self.assertRaises(NotFound) as ctx:
            self.client.get(job["id"])
        self.assertEqual(ctx.exception.status, 404)
        self.assertEqual(ctx.exception.kind, "not-found")

    def test_wait_streams_events(self):
        # A poll interval of an hour: only the event stream can end this
        # wait in time, and it reports progress as it goes.
        job = self.submit(**SMALL)
        seen = []
        t0 = time.monotonic()
        done = self.client.wait(job["id"], timeout=120, poll=3600, on_progress=seen.append)
        self.assertLess(time.monotonic() - t0, 120)
        self.assertEqual(done["status"], "succeeded")
        self.assertGreaterEqual(len(seen), 2)
        names = [name for name, _ in self.client.events(job["id"])]
        self.assertEqual(names, ["done"])
        self.client.cancel(job["id"])

    def test_submit_loop_within_rate_limit(self):
        # The server allows 1 job a second, bursts of 2: a loop of 5 submits
        # succeeds, the client waiting out each 429 as Retry-After says.
        ids = []
        try:
            for _ in range(5):
                ids.append(self.submit(**SMALL, limit=5)["id"])
            self.assertEqual(len(ids), 5)
            # With no wait allowed, the same limit is raised, typed.
            impatient = Client(max_wait=0)
            with self.assertRaises(TooManyRequests) as ctx:
                for _ in range(3):
                    ids.append(impatient.submit(**self.catalogue, **SMALL, limit=5)["id"])
            self.assertEqual(ctx.exception.status, 429)
            self.assertGreaterEqual(ctx.exception.retry_after, 1)
            self.assertIn("--submit-rate", ctx.exception.detail)
        finally:
            for job_id in ids:
                self.client.cancel(job_id)

    def test_addition_keeps_the_base_map(self):
        base = self.client.wait(self.submit(**SMALL)["id"], timeout=120)
        added = self.client.wait(self.client.add(base["id"], **self.catalogue, method="pca")["id"], timeout=120)
        self.assertEqual(added["request"]["base_job_id"], base["id"])
        self.assertEqual(added["request"]["image_size"], SMALL["image_size"])
        before = {r["id"]: (r["x"], r["y"]) for r in self.client.result_rows(base["id"])}
        after = {r["id"]: (r["x"], r["y"]) for r in self.client.result_rows(added["id"])}
        self.assertEqual(before, after)  # nothing new: every row where it was
        with self.assertRaises(NotFound):
            self.client.add("no-such-job", **self.catalogue)

    def test_follow_interval_below_the_minimum_names_the_field(self):
        with self.assertRaises(BadRequest) as cm:
            self.client.follow(1, **self.catalogue, **SMALL)
        self.assertIn("follow_interval_seconds", str(cm.exception))

    def test_invalid_request_names_the_field(self):
        with self.assertRaises(BadRequest) as ctx:
            self.submit(perplexity=-1)
        e = ctx.exception
        self.assertEqual((e.status, e.kind, e.title), (400, "invalid-request", "Invalid request"))
        self.assertIn("perplexity", e.fields)
        self.assertIn("perplexity", e.detail)

    def test_failed_job_raises(self):
        job = self.submit(perplexity=1000)
        with self.assertRaises(JobFailed) as ctx:
            self.client.wait(job["id"], timeout=120)
        self.assertEqual(ctx.exception.code, "perplexity_too_large")
        self.client.cancel(job["id"])

    def test_wait_times_out(self):
        job = self.submit(iterations=100000)
        try:
            with self.assertRaises(WaitTimeout) as ctx:
                self.client.wait(job["id"], timeout=1)
            self.assertEqual(ctx.exception.job["id"], job["id"])
        finally:
            self.client.cancel(job["id"])


class Answers503(http.server.BaseHTTPRequestHandler):
    """A server whose job store is full: 503 store-full with Retry-After."""

    hits = 0

    def do_POST(self):
        type(self).hits += 1
        body = b'{"type":"https://tsnemap.dev/problems/store-full","title":"Job store out of space","status":503,"detail":"full"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class TransportTest(unittest.TestCase):
    """What a live tsnemap cannot be made to do on cue: a store full for
    longer than the client may wait, and no server at all."""

    def test_503_waited_out_within_max_wait(self):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers503)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.shutdown)
        Answers503.hits = 0
        client = Client("http://127.0.0.1:%d" % srv.server_address[1], max_wait=2.5)
        t0 = time.monotonic()
        with self.assertRaises(ServiceUnavailable) as ctx:
            client.submit(dataset_url="http://x/d.tab", image_url_template="http://x/{id}")
        took = time.monotonic() - t0
        self.assertEqual(ctx.exception.kind, "store-full")
        self.assertEqual(ctx.exception.retry_after, 1)
        self.assertEqual(Answers503.hits, 3)  # at 0 s, 1 s, 2 s; a 4th would pass 2.5 s
        self.assertLess(took, 2.5)

    def test_connection_errors_retried_then_raised(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: nothing listens there
        client = Client("http://127.0.0.1:%d" % port, retries=2, backoff=0.05)
        t0 = time.monotonic()
        with self.assertRaises(ConnectionFailed):
            client.get("x")
        self.assertGreaterEqual(time.monotonic() - t0, 0.05)  # it backed off before giving up
        with self.assertRaises(ConnectionError):  # also a builtin ConnectionError
            client.submit(dataset_url="http://x/d.tab", image_url_template="http://x/{id}")


if __name__ == "__main__":
    unittest.main()
