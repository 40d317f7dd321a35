//! Named and detached containers (issue 14, R9 and S6) as the unprivileged test user: `-d`,
//! `--name`, `--rm`, `--restart`, and `oci2bin ps|stop|kill|logs|rm|inspect|exec` driving them
//! through a full lifecycle. Docker is the oracle for what `logs` and `exec` show where an engine
//! answers: the same image, the same commands under `docker run -d` / `logs` / `exec`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::subcommand::{oci, oci_ok, remove_on_drop};
use e2e::{assert_one_line_error, fixtures, text, Runner};

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

/// The container of the lifecycle: says it started, and says bye and exits 3 on TERM.
const WEB: &str = "echo started; trap \"echo bye; exit 3\" TERM; while :; do sleep 0.1; done";

/// Starts `bb() -d ARGS…`; returns the ID it printed.
fn detach(r: &Runner, args: &[&str]) -> String {
    let mut a = vec!["-d"];
    a.extend(args);
    let started = Instant::now();
    let id = r.ok(bb(), &a).trim().to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "-d prints the container's ID, as docker run -d: {id:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "-d returns once the container started"
    );
    id
}

fn state(r: &Runner, name: &str) -> serde_json::Value {
    serde_json::from_str(&oci_ok(r, &["inspect", name])).unwrap()
}

/// Polls `f` for up to 15 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_detached_named_container_through_ps_logs_exec_stop_and_rm() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["web"]);
    let id = detach(&r, &["--name", "web", "sh", "-c", WEB]);
    eventually("logs show started", || {
        oci_ok(&r, &["logs", "web"]) == "started\n"
    });

    let ps = oci_ok(&r, &["ps"]);
    let mut lines = ps.lines();
    let head = lines.next().unwrap();
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ] {
        assert!(head.contains(col), "ps columns as docker's: {head}");
    }
    let row = lines.find(|l| l.ends_with(" web")).expect("ps lists web");
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(row.contains("Up "), "{row}");
    let s = state(&r, "web");
    assert_eq!(
        (s["id"].as_str(), s["status"].as_str()),
        (Some(&id[..]), Some("running"))
    );
    let listed: serde_json::Value = serde_json::from_str(&oci_ok(&r, &["ps", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], "web");

    // The name is taken while it runs.
    let o = r.run(bb(), &["-d", "--name", "web", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert_one_line_error(&o, "already in use");

    // exec: in the container's pid and uts namespaces, its root and its environment.
    let out = oci_ok(
        &r,
        &[
            "exec",
            "web",
            "sh",
            "-c",
            "echo $$; id -u; hostname; cat /proc/1/cmdline; echo; echo $FIXTURE",
        ],
    );
    let l: Vec<&str> = out.lines().collect();
    let pid: u32 = l[0].parse().unwrap();
    assert!(
        pid > 2 && pid < 1000,
        "a pid of the container's namespace: {pid}"
    );
    assert_eq!(l[1], "0");
    assert_eq!(
        l[2],
        s["hostname"].as_str().unwrap(),
        "the container's host name"
    );
    assert!(
        l[3].starts_with("oci2bin-init"),
        "PID 1 is the container's init: {:?}",
        l[3]
    );
    assert_eq!(l[4], "busybox", "the container's environment");
    // Its exit status, -e, -w, and the container's processes are visible.
    let o = oci(
        &r,
        &[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "web",
            "sh",
            "-c",
            "echo $X $PWD; exit 7",
        ],
    );
    assert_eq!(
        (o.status.code(), text(&o.stdout)),
        (Some(7), "1 /tmp\n".into())
    );
    let ps_inside = oci_ok(&r, &["exec", "web", "ps", "-o", "args"]);
    assert!(
        ps_inside.contains("while :; do sleep 0.1; done"),
        "{ps_inside}"
    );
    // By the host PID of its PID 1 too.
    let by_pid = s["pid"].to_string();
    assert_eq!(
        oci_ok(&r, &["exec", &by_pid, "hostname"]),
        format!("{}\n", s["hostname"].as_str().unwrap())
    );

    // stop: the trap runs, its exit code is kept.
    assert_eq!(oci_ok(&r, &["stop", "web"]), "web\n");
    assert_eq!(oci_ok(&r, &["logs", "web"]), "started\nbye\n");
    let s = state(&r, "web");
    assert_eq!(
        (s["status"].as_str(), s["exit_code"].as_i64()),
        (Some("exited"), Some(3))
    );
    assert!(
        !oci_ok(&r, &["ps"]).contains("web"),
        "ps without -a lists running ones"
    );
    let all = oci_ok(&r, &["ps", "-a"]);
    assert!(
        all.lines()
            .any(|l| l.contains("Exited (3)") && l.ends_with(" web")),
        "{all}"
    );

    let o = oci(&r, &["exec", "web", "true"]);
    assert_one_line_error(&o, "not running");

    assert_eq!(oci_ok(&r, &["rm", "web"]), "web\n");
    assert!(
        !r.cache().join("containers/web").exists(),
        "rm removes the state"
    );
    assert!(!oci_ok(&r, &["ps", "-a"]).contains("web"));
    assert_one_line_error(&oci(&r, &["logs", "web"]), "no such container");
}

/// `-d` returns (and the state says running) once the container is set up, as `docker run -d`
/// returns once its command started: an exec right after it finds the container's root, its
/// init and its environment, never a root still being built.
#[test]
fn an_exec_right_after_d_returns_finds_the_container_set_up() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let names = ["ready0", "ready1", "ready2"];
    let _c = remove_on_drop(&r, &names);
    for name in names {
        detach(&r, &["--name", name, "sleep", "60"]);
        // Root of the container may write its root (the run's private upper).
        let out = oci_ok(
            &r,
            &[
                "exec",
                name,
                "sh",
                "-c",
                "echo $FIXTURE; head -c 12 /proc/1/cmdline; echo; mkdir /by-exec && echo made",
            ],
        );
        assert_eq!(out, "busybox\noci2bin-init\nmade\n", "{name}");
        oci_ok(&r, &["rm", "-f", name]);
    }
}

#[test]
fn kill_sends_the_signal_and_rm_refuses_a_running_container_without_force() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["k"]);
    let script = "trap 'echo usr1' USR1; echo ready; while :; do sleep 0.1; done";
    detach(&r, &["--name", "k", "sh", "-c", script]);
    assert_one_line_error(&oci(&r, &["rm", "k"]), "it is running");
    eventually("the trap is set", || {
        oci_ok(&r, &["logs", "k"]).contains("ready")
    });
    // A signal that does not end it goes to the command through the init.
    assert_eq!(oci_ok(&r, &["kill", "-s", "USR1", "k"]), "k\n");
    eventually("the trap ran", || {
        oci_ok(&r, &["logs", "k"]).contains("usr1")
    });
    assert_eq!(oci_ok(&r, &["kill", "-s", "KILL", "k"]), "k\n");
    eventually("killed shows as Exited (137)", || {
        state(&r, "k")["exit_code"].as_i64() == Some(137)
    });
    assert!(oci_ok(&r, &["ps", "-a"]).contains("Exited (137)"));
    assert_one_line_error(&oci(&r, &["kill", "k"]), "not running");
    assert_one_line_error(&oci(&r, &["kill", "-s", "NOPE", "k"]), "invalid signal");
    // rm -f of a running one.
    let id = detach(&r, &["sh", "-c", "sleep 60"]);
    let name = &id[..12];
    assert!(
        oci_ok(&r, &["ps"]).contains(name),
        "unnamed: the short ID is its name"
    );
    assert_eq!(
        oci_ok(&r, &["rm", "-f", &id[..8]]),
        format!("{name}\n"),
        "an ID prefix names it"
    );
    assert!(!oci_ok(&r, &["ps", "-a"]).contains(name));
}

#[test]
fn stale_state_after_kill_9_of_the_supervisor_shows_exited_and_signals_no_stranger() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["s", "stranger"]);
    detach(&r, &["--name", "s", "sh", "-c", "sleep 60"]);
    let s = state(&r, "s");
    let (sup, pid) = (
        s["supervisor_pid"].as_i64().unwrap(),
        s["pid"].as_i64().unwrap(),
    );
    Command::new("kill")
        .args(["-9", &sup.to_string()])
        .status()
        .unwrap();
    eventually("the container died with its supervisor", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    let s = state(&r, "s");
    assert_eq!(
        s["status"], "exited",
        "stale running state shows exited: {s}"
    );
    assert!(oci_ok(&r, &["ps", "-a"]).contains("Exited (unknown)"));
    assert_one_line_error(&oci(&r, &["exec", "s", "true"]), "not running");
    // The name is free again.
    detach(&r, &["--name", "s", "true"]);

    // A state whose pid now belongs to someone else (another start time): never signalled.
    let mut stranger = r.command(Path::new("/bin/sleep"), &["30"]).spawn().unwrap();
    let dir = r.cache().join("containers/stranger");
    std::fs::create_dir_all(&dir).unwrap();
    let fake = serde_json::json!({
        "id": "f".repeat(64), "name": "stranger", "status": "running",
        "pid": stranger.id(), "pid_start": 1, "supervisor_pid": stranger.id(),
        "supervisor_start": 1, "stop_signal": 15, "command": ["sleep"],
    });
    std::fs::write(dir.join("state.json"), fake.to_string()).unwrap();
    for p in [dir.clone(), dir.join("state.json")] {
        std::os::unix::fs::chown(p, Some(r.uid()), None).unwrap();
    }
    assert_eq!(state(&r, "stranger")["status"], "exited");
    assert_eq!(oci_ok(&r, &["stop", "stranger"]), "stranger\n");
    assert_one_line_error(&oci(&r, &["kill", "stranger"]), "not running");
    assert_eq!(oci_ok(&r, &["rm", "stranger"]), "stranger\n");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger still lives"
    );
    stranger.kill().unwrap();
    let _ = stranger.wait();
}

#[test]
fn restart_on_failure_restarts_twice_then_stops_and_stop_ends_always() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["rf", "ra"]);
    detach(
        &r,
        &[
            "--name",
            "rf",
            "--restart",
            "on-failure:2",
            "sh",
            "-c",
            "echo run; exit 1",
        ],
    );
    eventually("on-failure:2 gives up", || {
        state(&r, "rf")["status"] == "exited"
    });
    let s = state(&r, "rf");
    assert_eq!(
        (s["restart_count"].as_i64(), s["exit_code"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        oci_ok(&r, &["logs", "rf"]),
        "run\nrun\nrun\n",
        "the first run and two restarts"
    );

    detach(
        &r,
        &[
            "--name",
            "ra",
            "--restart",
            "always",
            "sh",
            "-c",
            "echo run; sleep 0.3",
        ],
    );
    eventually("always restarts", || {
        state(&r, "ra")["restart_count"].as_i64() >= Some(1)
    });
    assert_eq!(oci_ok(&r, &["stop", "ra"]), "ra\n");
    let s = state(&r, "ra");
    assert_eq!(s["status"], "exited", "{s}");
    let count = s["restart_count"].clone();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        state(&r, "ra")["restart_count"],
        count,
        "stop ended the policy"
    );
}

#[test]
fn logs_follow_until_the_container_stops_and_keep_the_streams_apart() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["f"]);
    let script = "for i in 1 2 3; do echo line$i; sleep 0.3; done; echo oops >&2";
    detach(&r, &["--name", "f", "sh", "-c", script]);
    let o = r
        .command(&e2e::oci2bin(), &["logs", "-f", "f"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "line1\nline2\nline3\n");
    assert_eq!(text(&o.stderr), "oops\n");
    assert_eq!(
        state(&r, "f")["status"],
        "exited",
        "-f returned once the container stopped"
    );
    // --tail counts the lines of both streams, as Docker's.
    let o = oci(&r, &["logs", "--tail", "2", "f"]);
    assert_eq!(
        (text(&o.stdout), text(&o.stderr)),
        ("line3\n".into(), "oops\n".into())
    );
    let stamped = oci_ok(&r, &["logs", "-t", "--tail", "2", "f"]);
    let (time, line) = stamped.split_once(' ').unwrap();
    assert!(
        time.ends_with('Z') && time.contains('T'),
        "RFC 3339: {time}"
    );
    assert_eq!(line, "line3\n");
    // The log is Docker's json-file format.
    let log = std::fs::read_to_string(r.cache().join("containers/f/container.log")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["log"].as_str(), first["stream"].as_str()),
        (Some("line1\n"), Some("stdout"))
    );
}

#[test]
fn named_foreground_runs_keep_their_state_and_unnamed_or_rm_ones_keep_none() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let o = r.run(bb(), &["--name", "fg", "sh", "-c", "echo hi; exit 4"]);
    assert_eq!((o.status.code(), text(&o.stdout)), (Some(4), "hi\n".into()));
    let s = state(&r, "fg");
    assert_eq!(
        (s["status"].as_str(), s["exit_code"].as_i64()),
        (Some("exited"), Some(4))
    );
    assert_one_line_error(&oci(&r, &["logs", "fg"]), "only a detached run");
    r.ok(bb(), &["--rm", "--name", "gone", "true"]);
    r.ok(bb(), &["true"]);
    let names: Vec<_> = std::fs::read_dir(r.cache().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        ["fg"],
        "only the named run without --rm left a state"
    );
    // A stopped container's name can be used again (its state is replaced).
    let o = r.run(bb(), &["--name", "fg", "true"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(state(&r, "fg")["exit_code"], 0);
    oci_ok(&r, &["rm", "fg"]);
}

#[test]
fn exec_joins_a_single_uid_container_and_inspect_tells_files_from_names() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["one"]);
    detach(
        &r,
        &[
            "--userns", "single", "--net", "none", "--name", "one", "sleep", "60",
        ],
    );
    let out = oci_ok(
        &r,
        &[
            "exec",
            "one",
            "sh",
            "-c",
            "id -u; cat /proc/net/dev | wc -l",
        ],
    );
    assert_eq!(
        out, "0\n3\n",
        "root of the container, in its network namespace (only lo)"
    );
    assert_one_line_error(
        &oci(&r, &["exec", "-u", "1000", "one", "true"]),
        "not mapped",
    );
    // inspect: a path that exists is a file, anything else a container.
    assert!(oci_ok(&r, &["inspect", bb().to_str().unwrap()]).contains("busybox"));
    assert_eq!(state(&r, "one")["name"], "one");
    assert_one_line_error(&oci(&r, &["inspect", "nothing-here"]), "nothing-here");
    oci_ok(&r, &["stop", "-t", "1", "one"]);
}

#[test]
fn exec_joins_a_mapped_container_as_its_non_root_user_and_as_any_other() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let ranged = r.run(bb(), &["--userns", "map", "true"]).status.success();
    if !e2e::require(ranged, "the test user has no subordinate id range to map") {
        return;
    }
    let _c = remove_on_drop(&r, &["mapped"]);
    detach(
        &r,
        &[
            "--userns",
            "map",
            "-u",
            "1000:1000",
            "--name",
            "mapped",
            "sleep",
            "60",
        ],
    );
    assert_eq!(
        oci_ok(&r, &["exec", "mapped", "id", "-u"]),
        "1000\n",
        "the container's user"
    );
    assert_eq!(
        oci_ok(&r, &["exec", "-u", "0", "mapped", "id", "-u"]),
        "0\n"
    );
    assert_eq!(
        oci_ok(&r, &["exec", "-u", "33", "mapped", "id", "-u"]),
        "33\n"
    );
    oci_ok(&r, &["stop", "-t", "1", "mapped"]);
}

/// `-d -t`: the detached container gets a pty whose output (stdout and stderr alike) goes to
/// the json-file log as `stdout`, as Docker's does; `-dit sh` keeps its pty open, so the shell
/// waits on it instead of ending.
#[test]
fn a_detached_tty_logs_the_pty_and_dit_keeps_the_shell_waiting_on_it() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["dt", "dit"]);
    detach(
        &r,
        &[
            "-t",
            "--name",
            "dt",
            "sh",
            "-c",
            "tty; echo hi; echo err >&2",
        ],
    );
    eventually("-dt ends", || state(&r, "dt")["status"] == "exited");
    let o = oci(&r, &["logs", "dt"]);
    assert_eq!(
        (text(&o.stdout), text(&o.stderr)),
        ("/dev/pts/0\r\nhi\r\nerr\r\n".into(), String::new())
    );
    detach(&r, &["-it", "--name", "dit", "sh"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(state(&r, "dit")["status"], "running", "sh waits on its pty");
    // PID 2: the shell under the init, on the container's pty.
    assert_eq!(
        oci_ok(&r, &["exec", "dit", "readlink", "/proc/2/fd/0"]),
        "/dev/pts/0\n"
    );
    eventually("the banner is logged", || {
        oci_ok(&r, &["logs", "dit"]).contains("built-in shell (ash)\r\n")
    });
    oci_ok(&r, &["stop", "-t", "1", "dit"]);
    assert_eq!(state(&r, "dit")["status"], "exited");
}

#[test]
fn detached_ttys_log_as_dockers_do() {
    if !e2e::runner::userns() || !e2e::docker::required() {
        return;
    }
    let tag = e2e::docker::load(bb());
    let docker = |args: &[&str]| Command::new("docker").args(args).output().unwrap();
    let probe = "tty; stty size; echo hi; echo err >&2";
    let mut docker_logs = Vec::new();
    for (name, flags, cmd) in [
        ("o2b-dt-oracle", "-dt", vec!["sh", "-c", probe]),
        ("o2b-dit-oracle", "-dit", vec!["sh"]),
    ] {
        let _ = docker(&["rm", "-f", name]);
        let mut args = vec!["run", flags, "--name", name, &tag];
        args.extend(&cmd);
        let d = docker(&args);
        assert!(d.status.success(), "docker run: {}", text(&d.stderr));
        std::thread::sleep(Duration::from_secs(2));
        let l = docker(&["logs", name]);
        docker_logs.push((text(&l.stdout), text(&l.stderr)));
        let _ = docker(&["rm", "-f", name]);
    }
    e2e::docker::remove(&tag);
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["dt", "dit"]);
    detach(&r, &["-t", "--name", "dt", "sh", "-c", probe]);
    detach(&r, &["-it", "--name", "dit", "sh"]);
    std::thread::sleep(Duration::from_secs(2));
    let mut ours = Vec::new();
    for name in ["dt", "dit"] {
        let l = oci(&r, &["logs", name]);
        ours.push((text(&l.stdout), text(&l.stderr)));
    }
    assert_eq!(ours, docker_logs);
}

#[test]
fn bad_lifecycle_flags_are_one_line_errors_with_exit_125() {
    for (args, needle) in [
        (&["--name", "-web", "true"][..], "'-web'"),
        (&["--name", "a/b", "true"][..], "'a/b'"),
        (
            &["--restart", "sometimes", "-d", "true"][..],
            "on-failure[:N]",
        ),
        (&["--restart", "always", "true"][..], "needs -d/--detach"),
        (
            &["-d", "--rm", "--restart", "always", "true"][..],
            "--restart and --rm",
        ),
    ] {
        let o = Runner::new().run(bb(), args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert_one_line_error(&o, needle);
    }
    let r = Runner::new();
    assert_one_line_error(&oci(&r, &["stop", "ghost"]), "no such container: ghost");
    assert_one_line_error(&oci(&r, &["exec", "ghost", "true"]), "no such container");
    assert_one_line_error(&oci(&r, &["logs", "--tail", "x", "ghost"]), "--tail");
}

#[test]
fn ps_logs_and_exec_answer_as_docker_does() {
    if !e2e::runner::userns() || !e2e::docker::required() {
        return;
    }
    let tag = e2e::docker::load(bb());
    let script = "echo out; echo err >&2; while :; do sleep 0.1; done";
    let d = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            "o2b-life-oracle",
            &tag,
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert!(d.status.success(), "docker run -d: {}", text(&d.stderr));
    let docker_id = text(&d.stdout).trim().to_string();
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["oracle"]);
    let ours_id = detach(&r, &["--name", "oracle", "sh", "-c", script]);
    assert_eq!(ours_id.len(), docker_id.len(), "an ID of Docker's shape");
    let docker = |args: &[&str]| Command::new("docker").args(args).output().unwrap();
    eventually("docker logs", || {
        text(&docker(&["logs", "o2b-life-oracle"]).stderr) == "err\n"
    });
    eventually("our logs", || {
        text(&oci(&r, &["logs", "oracle"]).stderr) == "err\n"
    });
    let (dl, ol) = (
        docker(&["logs", "o2b-life-oracle"]),
        oci(&r, &["logs", "oracle"]),
    );
    assert_eq!(
        (text(&ol.stdout), text(&ol.stderr)),
        (text(&dl.stdout), text(&dl.stderr))
    );
    let probe = "echo $X $PWD; id -u; exit 5";
    let de = docker(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "o2b-life-oracle",
        "sh",
        "-c",
        probe,
    ]);
    let oe = oci(
        &r,
        &[
            "exec", "-e", "X=1", "-w", "/tmp", "oracle", "sh", "-c", probe,
        ],
    );
    assert_eq!(
        (oe.status.code(), text(&oe.stdout)),
        (de.status.code(), text(&de.stdout))
    );
    let dstopped = docker(&["exec", "no-such-o2b", "true"]);
    assert!(!dstopped.status.success());
    let _ = docker(&["rm", "-f", "o2b-life-oracle"]);
    e2e::docker::remove(&tag);
}
