"""Tests of the Python client against a live server.

Environment: TSNEMAP_URL (the API), TSNEMAP_DATASET_URL and
TSNEMAP_IMAGE_URL_TEMPLATE (a catalogue the server may fetch, e.g. the one
`tsnemap serve --demo` prints). ci.sh sets them up.
"""

import os
import unittest

from tsnemap import APIError, Client, JobFailed


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = Client(os.environ["TSNEMAP_URL"])
        cls.dataset = os.environ["TSNEMAP_DATASET_URL"]
        cls.template = os.environ["TSNEMAP_IMAGE_URL_TEMPLATE"]

    def test_pca_round_trip(self):
        job = self.client.submit(dataset_url=self.dataset, image_url_template=self.template, method="pca",
                                 image_size={"width": 16, "height": 16})
        self.assertEqual(job["status"], "queued")
        self.assertEqual(job["request"]["perplexity"], 30)
        seen = []
        done = self.client.wait(job["id"], poll=0.2, timeout=120, on_progress=lambda j: seen.append(j["stage"]))
        self.assertEqual(done["status"], "succeeded")
        rows = self.client.result_rows(job["id"])
        self.assertGreater(len(rows), 10)
        self.assertIn("x", rows[0])
        mapped = [r for r in rows if r["x"] is not None]
        self.assertGreater(len(mapped), 10)
        self.assertTrue(all(isinstance(r["y"], float) for r in mapped))
        as_json = self.client.result(job["id"], "json")
        self.assertEqual(len(as_json["points"]), len(rows))
        self.assertIn(job["id"], [j["id"] for j in self.client.jobs()])
        self.assertIsNone(self.client.cancel(job["id"]))  # finished: deleted
        with self.assertRaises(APIError) as ctx:
            self.client.get(job["id"])
        self.assertEqual(ctx.exception.status, 404)

    def test_events_end_with_done(self):
        job = self.client.submit(dataset_url=self.dataset, image_url_template=self.template, method="pca",
                                 image_size={"width": 8, "height": 8})
        names = [name for name, _ in self.client.events(job["id"])]
        self.assertEqual(names[-1], "done")

    def test_validation_error_names_the_field(self):
        with self.assertRaises(APIError) as ctx:
            self.client.submit(dataset_url=self.dataset, image_url_template=self.template, perplexity=-1)
        self.assertEqual(ctx.exception.status, 400)
        self.assertIn("perplexity", [e["field"] for e in ctx.exception.errors])

    def test_failed_job_raises(self):
        job = self.client.submit(dataset_url=self.dataset, image_url_template=self.template, perplexity=1000)
        with self.assertRaises(JobFailed) as ctx:
            self.client.wait(job["id"], poll=0.2, timeout=120)
        self.assertEqual(ctx.exception.job["error"]["code"], "perplexity_too_large")


if __name__ == "__main__":
    unittest.main()
