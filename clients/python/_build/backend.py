"""A minimal PEP 517 build backend for the tsnemap client, standard library
only: it packs the `tsnemap` package into a wheel (and an sdist), so that
`pip install ./clients/python` needs no package index.

It reads name, version, description and requires-python from
pyproject.toml's [project] table.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "tsnemap"


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("[project]", 1)[1].split("\n[", 1)[0]
    meta = {}
    for key in ("name", "version", "description", "requires-python"):
        m = re.search(r'^%s\s*=\s*"([^"]*)"' % re.escape(key), section, re.M)
        if m:
            meta[key] = m.group(1)
    return meta


def _metadata(meta):
    lines = ["Metadata-Version: 2.1", "Name: " + meta["name"], "Version: " + meta["version"]]
    if "description" in meta:
        lines.append("Summary: " + meta["description"])
    if "requires-python" in meta:
        lines.append("Requires-Python: " + meta["requires-python"])
    readme = os.path.join(ROOT, "README.md")
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = "\n" + f.read()
    return "\n".join(lines) + "\n" + body


def _sources():
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, PACKAGE)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                yield path, os.path.relpath(path, ROOT).replace(os.sep, "/")


def _dist_name(meta):
    return re.sub(r"[-_.]+", "_", meta["name"]).lower()


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (arcname, digest, len(data))


def _wheel(wheel_directory, files):
    meta = _project()
    dist = _dist_name(meta)
    info = "%s-%s.dist-info" % (dist, meta["version"])
    files = list(files) + [
        (info + "/METADATA", _metadata(meta).encode("utf-8")),
        (info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: tsnemap-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (info + "/top_level.txt", (PACKAGE + "\n").encode()),
    ]
    record = [_record_line(a, d) for a, d in files] + [info + "/RECORD,,"]
    files.append((info + "/RECORD", ("\n".join(record) + "\n").encode()))
    name = "%s-%s-py3-none-any.whl" % (dist, meta["version"])
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files:
            z.writestr(zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return name


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, ((arc, _read(path)) for path, arc in _sources()))


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    # PEP 660: a .pth file puts this directory on sys.path.
    return _wheel(wheel_directory, [("_tsnemap_editable.pth", (ROOT + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    meta = _project()
    base = "%s-%s" % (_dist_name(meta), meta["version"])
    name = base + ".tar.gz"
    paths = [os.path.join(ROOT, p) for p in ("pyproject.toml", "README.md", "_build/backend.py")]
    paths += [p for p, _ in _sources()]
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for path in paths:
            t.add(path, arcname=base + "/" + os.path.relpath(path, ROOT).replace(os.sep, "/"))
        pkg = _metadata(meta).encode("utf-8")
        ti = tarfile.TarInfo(base + "/PKG-INFO")
        ti.size = len(pkg)
        t.addfile(ti, io.BytesIO(pkg))
    return name
