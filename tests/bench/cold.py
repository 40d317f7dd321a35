#!/usr/bin/env python3
"""Cold starts, fairly: each run of each command gets a fresh, empty directory ({dir} in the
command), the commands take turns (A B A B ...), and nothing is deleted until the end.

Deleting a tree between runs (hyperfine's --prepare "rm -rf") makes the next run's file creation
pay for it: on ext4 without a journal, as this VM's disk is, new inodes avoid those deleted in the
last minute by scanning for them, which tripled the kernel time of both tar and us.

usage: cold.py WORK RUNS OWNER "NAME|LABEL|COMMAND"...
Writes WORK/NAME.json in hyperfine's shape (results[0].median, seconds) and prints one row per
command: median, then min-max, then the median CPU time (user + system, of the command and
every process it waited for: on N cores no run can take less than CPU / N). OWNER (a user name, or "-") gets the fresh directories.
"""
import json, os, resource, shlex, shutil, statistics, subprocess, sys, time

work, runs, owner = sys.argv[1], int(sys.argv[2]), sys.argv[3]
specs = [a.split("|", 2) for a in sys.argv[4:]]
times = {name: [] for name, _, _ in specs}
cpu = {name: [] for name, _, _ in specs}
failed = {}
base = os.path.join(work, "cold-runs")
os.makedirs(base, exist_ok=True)
for i in range(runs):
    for name, _, cmd in specs:
        d = os.path.join(base, f"{name}.{i}")
        os.mkdir(d)
        if owner != "-":
            shutil.chown(d, owner, owner)
        argv = shlex.split(cmd.replace("{dir}", d))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.monotonic()
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = time.monotonic() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if r.returncode != 0:
            failed[name] = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {r.returncode}"]
        times[name].append(dt)
for name, label, _ in specs:
    ts = times[name]
    if name in failed:
        print(f"  {label:34s}  failed ({failed[name][0]})")
        continue
    med = statistics.median(ts)
    c = statistics.median(cpu[name])
    json.dump({"results": [{"median": med, "times": ts, "cpu": cpu[name]}]}, open(os.path.join(work, f"{name}.json"), "w"))
    print(f"  {label:34s}{med * 1000:8.1f} ms  ({min(ts) * 1000:.0f}-{max(ts) * 1000:.0f}; CPU {c * 1000:.0f} ms)")
