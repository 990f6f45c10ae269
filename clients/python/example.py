"""Maps a catalogue and prints where each picture landed.

    python3 example.py http://localhost:8080 https://host/data.tab 'https://host/img/{id}.jpg'
"""

import sys

from tsnemap import Client


def main():
    api, dataset, template = sys.argv[1:4]
    client = Client(api)
    job = client.submit(dataset_url=dataset, image_url_template=template, perplexity=20)
    print("submitted", job["id"], file=sys.stderr)

    def show(j):
        p = j["progress"]
        print("  %-20s images %d/%d  iteration %d/%d" % (j["stage"], p["images_loaded"], p["images_total"],
                                                         p["iteration"], p["iterations"]), file=sys.stderr)

    client.wait(job["id"], poll=2.0, on_progress=show)
    rows = client.result_rows(job["id"])
    for row in rows[:10]:
        print(row["id"], row["x"], row["y"])
    print("%d rows, %d without coordinates" % (len(rows), sum(r["x"] is None for r in rows)), file=sys.stderr)


if __name__ == "__main__":
    main()
