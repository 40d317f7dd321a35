#!/usr/bin/env python3
"""The layer store's figures (issue 15): ten images on the Debian base, each the fixture plus one
small layer of its own (the first is the fixture itself).

- cold start of the first image, then of each other one with the base already in the store, and
  how much the store grew for each (against the new layer's own size);
- disk use of the ten in the store against one merged tree per image (OCI2BIN_ROOTFS=merged, the
  design before the store).

usage: store.py OCI2BIN LAYOUT WORK OWNER AS_USER...
AS_USER is the command prefix that runs as the unprivileged user (empty when we are that user).
"""
import glob, os, shutil, statistics, subprocess, sys, tarfile, io, time

oci2bin, layout, work, owner = sys.argv[1:5]
as_user = sys.argv[5:]
here = os.path.dirname(os.path.abspath(__file__))
add_layer = os.path.join(here, "..", "fixtures", "add_layer.py")
d = os.path.join(work, "store")
os.makedirs(d, exist_ok=True)


def mine(p):
    if owner != "-":
        shutil.chown(p, owner, owner)


def image(i):
    """The fixture plus a small layer adding /opt/bench/N (i > 0), built as a file."""
    f = os.path.join(d, f"img{i}")
    src = layout
    if i > 0:
        src = os.path.join(d, f"layout{i}")
        os.makedirs(src)
        # Blobs hard-linked; the index is rewritten, so it is copied.
        subprocess.run(["cp", "-al", os.path.join(layout, "blobs"), src], check=True)
        for n in ("index.json", "oci-layout"):
            shutil.copy(os.path.join(layout, n), src)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, data in [("opt/bench", None), (f"opt/bench/{i}", f"image {i}\n".encode() * 200)]:
                ti = tarfile.TarInfo(name)
                ti.mtime = 1700000000
                if data is None:
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                    t.addfile(ti)
                else:
                    ti.size, ti.mode = len(data), 0o644
                    t.addfile(ti, io.BytesIO(data))
        lt = os.path.join(d, f"l{i}.tar")
        open(lt, "wb").write(buf.getvalue())
        subprocess.run([sys.executable, add_layer, src, "latest", lt, "gzip"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([oci2bin, "-q", f"oci:{src}:latest", f], check=True)
    os.chmod(f, 0o755)
    return f


def flushed(p):
    """Waits (up to 30 s) for the background flush of the last cold start to take the layers'
    `unsynced` marks away: the store as it stays, not a moment of it."""
    for _ in range(300):
        marks = glob.glob(os.path.join(p, "*", "unsynced")) + glob.glob(os.path.join(p, "*", "*", "unsynced"))
        if not marks:
            return
        time.sleep(0.1)


def du(p):
    flushed(p)
    out = subprocess.run(["du", "-s", "-B1", p], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def start(f, cache, merged=False):
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={d}", f"XDG_CACHE_HOME={cache}"]
    if merged:
        env.append("OCI2BIN_ROOTFS=merged")
    t = time.monotonic()
    subprocess.run(as_user + env + [f, "--userns=single", "/bin/true"], check=True)
    return time.monotonic() - t


def mib(n):
    return f"{n / 2**20:.1f} MiB"


files = [image(i) for i in range(10)]
new_layer = len(open(os.path.join(d, "l1.tar"), "rb").read())
caches = {}
for kind in ("stacked", "merged"):
    caches[kind] = os.path.join(d, f"cache-{kind}")
    os.mkdir(caches[kind])
    mine(caches[kind])

s = caches["stacked"]
first = start(files[0], s)
layers = os.path.join(s, "oci2bin", "layers")
seconds, growth = [], []
for f in files[1:]:
    before = du(layers)
    seconds.append(start(f, s))
    growth.append(du(layers) - before)
for f in files:
    start(f, caches["merged"], merged=True)
disk = {k: du(os.path.join(c, "oci2bin")) for k, c in caches.items()}

second = statistics.median(seconds)
print(f"  {'first image cold (store empty)':34s}{first * 1000:8.1f} ms")
print(f"  {'another image on the base, cold':34s}{second * 1000:8.1f} ms  (median of 9: {min(seconds) * 1000:.0f}-{max(seconds) * 1000:.0f})")
print(f"  {'store growth per such image':34s}{statistics.median(growth) / 1024:8.1f} KiB (its layer: {new_layer / 1024:.1f} KiB of tar)")
print(f"  {'ten images, layer store':34s}{mib(disk['stacked']):>11s}")
print(f"  {'ten images, one merged tree each':34s}{mib(disk['merged']):>11s}")
print(f"  another image vs the first         : {second / first:6.3f}x the time (goal <= 0.1x)")
print(f"  disk, store vs merged trees        : {disk['stacked'] / disk['merged']:6.3f}x the space")
