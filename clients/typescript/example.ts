// Maps a catalogue with tsnemap through a client generated from its spec:
// types from openapi-typescript (schema.d.ts, made by `npm run generate`),
// requests by openapi-fetch. Submits, follows the job, fetches the result.
//
//   npm ci && npm run generate && npx tsc && node dist/example.js
//
// Environment: TSNEMAP_URL (default http://localhost:8080), TSNEMAP_API_KEY
// (for a server with keys); the catalogue is the server's demo (serve
// --demo) unless TSNEMAP_DATASET_URL and TSNEMAP_IMAGE_URL_TEMPLATE say.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Job = components["schemas"]["Job"];
type Problem = components["schemas"]["Problem"];

const baseUrl = process.env.TSNEMAP_URL ?? "http://localhost:8080";
const key = process.env.TSNEMAP_API_KEY;
const client = createClient<paths>({ baseUrl, headers: key ? { Authorization: `Bearer ${key}` } : {} });

function fail(what: string, status: number, p: Problem | undefined): never {
  throw new Error(`${what}: ${status} ${p?.title ?? ""}: ${p?.detail ?? ""}`);
}

async function catalogue(): Promise<{ dataset_url: string; image_url_template: string }> {
  const dataset = process.env.TSNEMAP_DATASET_URL;
  const template = process.env.TSNEMAP_IMAGE_URL_TEMPLATE;
  if (dataset && template) return { dataset_url: dataset, image_url_template: template };
  const { data, error, response } = await client.GET("/demo.json");
  if (!data) fail("GET /demo.json", response.status, error);
  return data;
}

async function main(): Promise<void> {
  // Only the fields without a default: the others stay optional in the
  // generated request type (openapi-typescript --default-non-nullable false).
  const submitted = await client.POST("/v1/jobs", { body: { ...(await catalogue()), method: "pca" } });
  if (!submitted.data) fail("POST /v1/jobs", submitted.response.status, submitted.error);
  let job: Job = submitted.data;
  console.log(`submitted ${job.id}: ${submitted.response.headers.get("Location")}`);

  while (job.status === "queued" || job.status === "running") {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const got = await client.GET("/v1/jobs/{id}", { params: { path: { id: job.id } } });
    if (!got.data) fail("GET /v1/jobs/{id}", got.response.status, got.error);
    job = got.data;
    console.log(`${job.stage}: ${job.progress.images_loaded}/${job.progress.images_total} images`);
  }
  if (job.status !== "succeeded") {
    throw new Error(`job ${job.id} ${job.status}: ${job.error?.code} ${job.error?.message}`);
  }

  const result = await client.GET("/v1/jobs/{id}/result", {
    params: { path: { id: job.id }, query: { format: "json" } },
    headers: { Accept: "application/json" },
  });
  if (!result.data) fail("GET /v1/jobs/{id}/result", result.response.status, result.error);
  // The route also serves TSV and CSV (strings); format=json is a Result.
  if (typeof result.data === "string") throw new Error("the result came as text, not JSON");
  const points = result.data.points;
  const mapped = points.filter((p) => p.x !== null && p.y !== null);
  if (mapped.length === 0) throw new Error("no point has coordinates");
  const first = mapped[0]!;
  console.log(`${points.length} rows, ${mapped.length} mapped; ${first.id} at (${first.x}, ${first.y})`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
