"""A client for the tsnemap HTTP API (v1), standard library only.

    from tsnemap import Client
    client = Client()                  # $TSNEMAP_URL, else http://localhost:8080
    job = client.submit(dataset_url="https://host/data.tab",
                        image_url_template="https://host/img/{id}.jpg")
    job = client.wait(job["id"], on_progress=lambda j: print(j["stage"]))
    for row in client.result_rows(job["id"]):
        print(row["id"], row["x"], row["y"])

Every error answer of the server raises an APIError subclass carrying the
problem+json fields (status, type, title, detail, errors). 429 and 503 are
waited out as the server's Retry-After says, within a bounded total wait
(max_wait); connection errors are retried with backoff on calls that are
safe to repeat. The contract is served by the server at /openapi.yaml.
"""

import csv
import http.client
import io
import json
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = [
    "Client", "TsnemapError", "APIError", "BadRequest", "Unauthorized", "NotFound", "Conflict",
    "TooLarge", "Unprocessable", "TooManyRequests", "ServiceUnavailable", "ServerError",
    "ConnectionFailed", "JobFailed", "WaitTimeout",
]

__version__ = "1.0.0"

FINISHED = ("succeeded", "failed", "canceled")
DEFAULT_URL = "http://localhost:8080"


class TsnemapError(Exception):
    """Base of every error this client raises."""


class APIError(TsnemapError):
    """An error answer of the API (application/problem+json, RFC 9457).

    status, type, title, detail, instance: the problem's fields; kind: the
    last part of type (e.g. "too-many-requests", "store-full"); errors: a
    list of {"field", "message"} for invalid requests; fields: the names
    in errors; retry_after: seconds the server asked to wait, or None.
    """

    def __init__(self, status, problem, retry_after=None):
        problem = problem or {}
        self.status = status
        self.problem = problem
        self.type = problem.get("type", "")
        self.kind = self.type.rsplit("/", 1)[-1]
        self.title = problem.get("title", "")
        self.detail = problem.get("detail", "")
        self.instance = problem.get("instance")
        self.errors = problem.get("errors") or []
        self.fields = [e.get("field") for e in self.errors]
        self.retry_after = retry_after
        super().__init__("%d %s: %s" % (status, self.title, self.detail))


class BadRequest(APIError):
    """400: malformed or out-of-range input; errors names each field."""


class Unauthorized(APIError):
    """401: the server needs an API key (Client(api_key=...) or $TSNEMAP_API_KEY)."""


class NotFound(APIError):
    """404: no such job (or not this key's)."""


class Conflict(APIError):
    """409: the job has not got that far (yet)."""


class TooLarge(APIError):
    """413: the request body is over 1 MB."""


class Unprocessable(APIError):
    """422: well-formed, but the server cannot serve it (a URL it may not fetch, a GPU it lacks)."""


class TooManyRequests(APIError):
    """429: a per-key limit; raised once waiting for it would pass max_wait."""


class ServiceUnavailable(APIError):
    """503: the job store is unreachable or full; raised once waiting would pass max_wait."""


class ServerError(APIError):
    """Any other 5xx."""


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 404: NotFound, 409: Conflict, 413: TooLarge,
              422: Unprocessable, 429: TooManyRequests, 503: ServiceUnavailable}


def _api_error(status, problem, retry_after=None):
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(status, problem, retry_after)


class ConnectionFailed(TsnemapError, ConnectionError):
    """The server could not be reached (after the retries allowed)."""


class JobFailed(TsnemapError):
    """wait() found the job failed or canceled; job is the final Job, code and message its error."""

    def __init__(self, job):
        self.job = job
        err = job.get("error") or {}
        self.code = err.get("code", "")
        self.message = err.get("message", "")
        super().__init__("job %s %s: %s %s" % (job["id"], job["status"], self.code, self.message))


class WaitTimeout(TsnemapError, TimeoutError):
    """wait() ran out of time; job is the last state seen."""

    def __init__(self, job, timeout):
        self.job = job
        super().__init__("job %s still %s after %ss" % (job["id"], job["status"], timeout))


def _retry_after(value):
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        from email.utils import parsedate_to_datetime
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _refused(err):
    """Whether a connection error happened before the request could reach the server."""
    reason = getattr(err, "reason", err)
    return isinstance(reason, ConnectionRefusedError)


class Client:
    """A tsnemap server.

    base_url: the server (default: $TSNEMAP_URL, else http://localhost:8080).
    api_key: for a server started with --api-keys-file (default: $TSNEMAP_API_KEY).
    timeout: seconds for each HTTP request (connect, and each read).
    max_wait: the longest total time one call spends waiting out 429 and
        503 answers (Retry-After) and retrying connection errors; past it
        the error is raised. 0 raises at once.
    retries: attempts after the first on connection errors, for calls safe
        to repeat (reads, DELETE; a submit only when the connection was
        refused, so nothing reached the server).
    backoff: the first wait between retries, in seconds, doubled each time
        (with jitter).
    """

    def __init__(self, base_url=None, api_key=None, timeout=30.0, max_wait=120.0, retries=3, backoff=0.5):
        self.base_url = (base_url or os.environ.get("TSNEMAP_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("TSNEMAP_API_KEY") or None
        self.timeout = timeout
        self.max_wait = max_wait
        self.retries = retries
        self.backoff = backoff

    # -- transport -------------------------------------------------------

    def _open(self, method, path, body=None, accept="application/json", timeout=None):
        """Sends one request, waiting out 429/503 and retrying connection
        errors as configured; returns the open response (2xx)."""
        data = None
        headers = {"Accept": accept, "User-Agent": "tsnemap-python/" + __version__}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        idempotent = method in ("GET", "HEAD", "DELETE")
        deadline = time.monotonic() + self.max_wait
        failures = 0
        while True:
            req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
            try:
                return urllib.request.urlopen(req, timeout=timeout or self.timeout)
            except urllib.error.HTTPError as e:
                err = self._problem(e)
                if e.code not in (429, 503):
                    raise err from None
                # Refused, so nothing was created: repeating is safe even
                # for a submit. Wait as the server says (or back off).
                failures += 1
                pause = err.retry_after if err.retry_after is not None else self._pause(failures)
                if time.monotonic() + pause > deadline:
                    raise err from None
            except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError) as e:
                failures += 1
                pause = self._pause(failures)
                if not (idempotent or _refused(e)) or failures > self.retries or time.monotonic() + pause > deadline:
                    raise ConnectionFailed("%s %s: %s" % (method, self.base_url + path, getattr(e, "reason", e))) from e
            time.sleep(pause)

    def _pause(self, failures):
        d = self.backoff * (2 ** (failures - 1))
        return d / 2 + random.uniform(0, d / 2)

    @staticmethod
    def _problem(e):
        payload = e.read()
        try:
            problem = json.loads(payload.decode("utf-8"))
        except ValueError:
            problem = {"title": e.reason, "detail": payload.decode("utf-8", "replace")}
        return _api_error(e.code, problem, _retry_after(e.headers.get("Retry-After")))

    def _request(self, method, path, body=None, accept="application/json", raw=False):
        with self._open(method, path, body, accept) as res:
            try:
                payload = res.read()
            except (http.client.HTTPException, OSError) as e:
                raise ConnectionFailed("%s %s: %s" % (method, self.base_url + path, e)) from e
        if raw:
            return payload
        if not payload:
            return None
        return json.loads(payload.decode("utf-8"))

    @staticmethod
    def _job_path(job_id, tail=""):
        return "/v1/jobs/" + urllib.parse.quote(job_id, safe="") + tail

    # -- the API ---------------------------------------------------------

    def submit(self, *, features_url=None, metric=None, **request):
        """Submits a job (the fields of JobRequest) and returns the Job.

        features_url: a file of vectors computed elsewhere (Parquet, TSV,
        CSV, or .npy with its .ids.txt), matched to the table's rows by id;
        the map is made of them instead of the pixels, and images become
        optional. metric: "euclidean" (default) or "cosine".
        """
        if features_url is not None:
            request["features_url"] = features_url
        if metric is not None:
            request["metric"] = metric
        return self._request("POST", "/v1/jobs", request)

    def add(self, base_job_id, **request):
        """Submits an addition to the finished job base_job_id (docs/growing.md)
        and returns the Job: the table's rows whose id the base has keep the
        base's coordinates, new rows are placed among them without moving any.
        image_size, metric, method and dimensions default to the base's.
        Raises NotFound for a base that does not exist (or was deleted) and
        ApiError with status 409 for one that cannot be added to."""
        request["base_job_id"] = base_job_id
        return self._request("POST", "/v1/jobs", request)

    def follow(self, interval_seconds, **request):
        """Submits a job that, once succeeded, re-reads its table every
        interval_seconds and grows its map by the new rows (marking rows gone
        from the table removed); watch it with additions()."""
        request["follow_interval_seconds"] = interval_seconds
        return self._request("POST", "/v1/jobs", request)

    def additions(self, job_id, timeout=None):
        """Yields each AddedEvent of a job that follows its table
        ({"rows": [{"row", "id", "coords"}], "removed": [ids]}) as it comes,
        until the job is deleted or the stream ends. timeout: seconds each
        read may wait (the server sends a keep-alive every 15 s)."""
        for event, data in self.events(job_id, timeout=timeout, past_done=True):
            if event == "added":
                yield data

    def get(self, job_id):
        """The Job."""
        return self._request("GET", self._job_path(job_id))

    def list(self, status=None, limit=None, page_token=None):
        """One page of jobs: {"jobs": [...], "next_page_token": ...}."""
        q = {k: v for k, v in (("status", status), ("limit", limit), ("page_token", page_token)) if v is not None}
        return self._request("GET", "/v1/jobs" + ("?" + urllib.parse.urlencode(q) if q else ""))

    def jobs(self, status=None):
        """Iterates over every job, newest first, across pages."""
        token = None
        while True:
            page = self.list(status=status, limit=100, page_token=token)
            yield from page["jobs"]
            token = page.get("next_page_token")
            if not token:
                return

    def cancel(self, job_id):
        """Cancels a queued or running job (returns it) or deletes a finished one (returns None)."""
        return self._request("DELETE", self._job_path(job_id))

    def demo(self):
        """The demo catalogue of a server started with --demo:
        {"dataset_url", "image_url_template", "perplexity"}."""
        return self._request("GET", "/demo.json")

    def result(self, job_id, format="tsv"):
        """The result as text (tsv, csv) or as the parsed JSON result (json)."""
        path = self._job_path(job_id, "/result?format=" + format)
        if format == "json":
            return self._request("GET", path)
        return self._request("GET", path, accept="*/*", raw=True).decode("utf-8")

    def result_rows(self, job_id):
        """The result table as a list of dicts: the original columns plus x, y (and z),
        then cluster (and grid_x, grid_y when the job asked for a grid), and
        removed (a bool) for a job that follows its table.

        Coordinates are floats, or None for rows whose image failed; cluster
        and grid cells are ints, cluster None for rows in no hotspot.
        """
        rows = list(csv.DictReader(io.StringIO(self.result(job_id, "tsv")), delimiter="\t"))
        for row in rows:
            for k, kind in (("x", float), ("y", float), ("z", float), ("cluster", int), ("grid_x", int), ("grid_y", int)):
                if k in row:
                    row[k] = kind(row[k]) if row[k] != "" else None
            if "removed" in row:
                row["removed"] = row["removed"] == "1"
        return rows

    def failures(self, job_id):
        """The images that could not be loaded (so far)."""
        return self._request("GET", self._job_path(job_id, "/failures"))["failures"]

    def map_png(self, job_id, width=1200, height=900):
        """The map as PNG bytes."""
        return self._request("GET", self._job_path(job_id, "/map.png?width=%d&height=%d" % (width, height)),
                             accept="image/png", raw=True)

    # -- following a job -------------------------------------------------

    def events(self, job_id, embedding=False, timeout=None, past_done=False):
        """Yields (event, data) from the job's Server-Sent Events until "done".

        data is the parsed JSON: a Job for "progress" and "done", an
        EmbeddingSnapshot for "embedding" (only with embedding=True).
        timeout: seconds each read may wait (default: the client's timeout;
        the server sends a keep-alive every 15 s). A stream that ends
        before "done" raises ConnectionFailed. past_done=True goes on after
        "done" for a job that follows its table ("added" events) until the
        server ends the stream.
        """
        path = self._job_path(job_id, "/events" + ("?embedding=1" if embedding else ""))
        res = self._open("GET", path, accept="text/event-stream", timeout=timeout)
        with res:
            ctype = res.headers.get("Content-Type", "")
            if not ctype.startswith("text/event-stream"):
                raise ConnectionFailed("GET %s: answered %r, not an event stream" % (path, ctype))
            event, data = None, []
            try:
                for line in res:
                    line = line.decode("utf-8").rstrip("\r\n")
                    if line.startswith(":"):
                        continue  # keep-alive comment
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif line == "" and event:
                        yield event, json.loads("\n".join(data))
                        if event == "done" and not past_done:
                            return
                        event, data = None, []
            except (http.client.HTTPException, OSError) as e:
                raise ConnectionFailed("GET %s: the stream broke: %s" % (path, e)) from e
        if past_done:
            return
        raise ConnectionFailed("GET %s: the stream ended before the job did" % path)

    def wait(self, job_id, timeout=None, on_progress=None, poll=1.0, stream=True):
        """Waits until the job ends; returns it if it succeeded, else raises JobFailed.

        Follows the job's Server-Sent Events (stream=True), reconnecting
        when a stream breaks, and falls back to polling every poll seconds
        when streaming does not work (e.g. a proxy that buffers). on_progress,
        if given, is called with the Job at each change (and with the last).
        timeout: seconds in all (None: no limit); past it raises WaitTimeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        breaks = 0
        while stream and breaks < 3:
            try:
                read_timeout = self.timeout if deadline is None else max(0.1, min(self.timeout, deadline - time.monotonic()))
                for event, data in self.events(job_id, timeout=read_timeout):
                    if event not in ("progress", "done"):
                        continue
                    last = data
                    if on_progress:
                        on_progress(data)
                    if event == "done":
                        return self._finished(data)
                    if deadline is not None and time.monotonic() > deadline:
                        raise WaitTimeout(data, timeout)
            except ConnectionFailed:
                breaks += 1
                if last is None:
                    break  # no stream at all here: poll instead
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeout(last, timeout) from None
        while True:
            job = self.get(job_id)
            if on_progress and job != last:
                on_progress(job)
            last = job
            if job["status"] in FINISHED:
                return self._finished(job)
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(job, timeout)
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    @staticmethod
    def _finished(job):
        if job["status"] != "succeeded":
            raise JobFailed(job)
        return job
