"""A small client for the tsnemap HTTP API (v1), standard library only.

    from tsnemap import Client
    c = Client("http://localhost:8080")
    job = c.submit(dataset_url="https://host/data.tab",
                   image_url_template="https://host/img/{id}.jpg")
    job = c.wait(job["id"], on_progress=lambda j: print(j["stage"]))
    for row in c.result_rows(job["id"]):
        print(row["id"], row["x"], row["y"])

The contract is served by the server itself at /openapi.yaml.
"""

import csv
import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["Client", "APIError", "JobFailed"]

FINISHED = ("succeeded", "failed", "canceled")


class APIError(Exception):
    """An error answer of the API (application/problem+json)."""

    def __init__(self, status, problem):
        self.status = status
        self.problem = problem or {}
        self.errors = self.problem.get("errors") or []
        super().__init__("%d %s: %s" % (status, self.problem.get("title", ""), self.problem.get("detail", "")))


class JobFailed(Exception):
    """wait() found the job failed or canceled."""

    def __init__(self, job):
        self.job = job
        err = job.get("error") or {}
        super().__init__("job %s %s: %s %s" % (job["id"], job["status"], err.get("code", ""), err.get("message", "")))


class Client:
    def __init__(self, base_url="http://localhost:8080", timeout=30.0, api_key=None):
        """api_key: the key of a server started with --api-keys-file (default:
        the environment variable TSNEMAP_API_KEY, if set)."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.api_key = api_key if api_key is not None else os.environ.get("TSNEMAP_API_KEY") or None

    def _auth(self, headers):
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        return headers

    def _request(self, method, path, body=None, accept="application/json", raw=False):
        data = None
        headers = {"Accept": accept}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=self._auth(headers))
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                payload = res.read()
                if raw:
                    return payload
                if not payload:
                    return None
                return json.loads(payload.decode("utf-8"))
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                problem = json.loads(payload.decode("utf-8"))
            except ValueError:
                problem = {"title": e.reason, "detail": payload.decode("utf-8", "replace")}
            raise APIError(e.code, problem) from None

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

    def get(self, job_id):
        return self._request("GET", "/v1/jobs/" + urllib.parse.quote(job_id, safe=""))

    def list(self, status=None, limit=None, page_token=None):
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
        return self._request("DELETE", "/v1/jobs/" + urllib.parse.quote(job_id, safe=""))

    def wait(self, job_id, poll=1.0, timeout=None, on_progress=None):
        """Polls until the job ends; returns it if it succeeded, else raises JobFailed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_progress:
                on_progress(job)
            if job["status"] in FINISHED:
                if job["status"] != "succeeded":
                    raise JobFailed(job)
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("job %s still %s after %ss" % (job_id, job["status"], timeout))
            time.sleep(poll)

    def result(self, job_id, format="tsv"):
        """The result as text (tsv, csv) or as the parsed JSON result (json)."""
        path = "/v1/jobs/%s/result?format=%s" % (urllib.parse.quote(job_id, safe=""), format)
        if format == "json":
            return self._request("GET", path)
        return self._request("GET", path, accept="*/*", raw=True).decode("utf-8")

    def result_rows(self, job_id):
        """The result table as a list of dicts: the original columns plus x, y (and z).

        Coordinates are floats, or None for rows whose image failed.
        """
        rows = list(csv.DictReader(io.StringIO(self.result(job_id, "tsv")), delimiter="\t"))
        for row in rows:
            for k in ("x", "y", "z"):
                if k in row:
                    row[k] = float(row[k]) if row[k] != "" else None
        return rows

    def failures(self, job_id):
        return self._request("GET", "/v1/jobs/%s/failures" % urllib.parse.quote(job_id, safe=""))["failures"]

    def events(self, job_id, embedding=False):
        """Yields (event, data) from the job's Server-Sent Events until done."""
        path = "/v1/jobs/%s/events%s" % (urllib.parse.quote(job_id, safe=""), "?embedding=1" if embedding else "")
        req = urllib.request.Request(self.base_url + path, headers=self._auth({"Accept": "text/event-stream"}))
        try:
            res = urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise APIError(e.code, json.loads(e.read().decode("utf-8") or "{}")) from None
        with res:
            event, data = None, []
            for line in res:
                line = line.decode("utf-8").rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif line == "" and event:
                    yield event, json.loads("\n".join(data))
                    if event == "done":
                        return
                    event, data = None, []
