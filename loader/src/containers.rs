//! Named and detached containers: the on-disk contract shared by the loader (which writes the
//! state of its runs) and the packager (`oci2bin ps|stop|kill|logs|rm|inspect|exec`, which reads
//! it with serde). Pure: no I/O.
//!
//! Layout under the cache root (see [`crate::cachedir`]):
//! ```text
//! containers/NAME/state.json      the state, replaced whole by rename(2) on every change
//! containers/NAME/container.log   detached runs: Docker's json-file lines
//!                                 {"log":"…\n","stream":"stdout|stderr","time":"RFC 3339"}
//! containers/NAME/lock            flock(LOCK_EX) by the run's supervisor while it lives: a
//!                                 second run with the same name is refused while it is held
//! containers/NAME/stop-requested  `oci2bin stop|kill` was asked: the restart policy is over
//! containers/NAME/seccomp.bpf     the seccomp filter the run installed, as it compiled it
//!                                 (`struct sock_filter` bytes), for `oci2bin exec`
//! ```

use std::fmt::Write as _;
use std::time::Duration;

pub const CONTAINERS: &str = "containers";
pub const STATE: &str = "state.json";
pub const LOG: &str = "container.log";
pub const LOCK: &str = "lock";
pub const STOP_REQUESTED: &str = "stop-requested";
pub const SECCOMP: &str = "seccomp.bpf";
/// The environment variable that puts the loader in exec mode: it joins the container whose
/// PID 1 has this host pid and runs the command there (set by `oci2bin exec`).
pub const EXEC_INTO: &str = "OCI2BIN_EXEC_INTO";
/// With [`EXEC_INTO`]: the path of the container's [`SECCOMP`] filter, which the command gets
/// (unset: the run had no filter, or the exec is `--privileged`).
pub const EXEC_SECCOMP: &str = "OCI2BIN_EXEC_SECCOMP";

/// Docker's rule for names, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; at most 128 bytes (a directory name).
pub fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `--restart`: what the supervisor of a detached run does when the container ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Restart {
    #[default]
    No,
    /// Restart after a non-zero exit, at most this many times (`None`: no limit).
    OnFailure(Option<u32>),
    Always,
    /// As `Always` (there is no daemon restart for the difference to show).
    UnlessStopped,
}

impl Restart {
    pub fn parse(s: &str) -> Option<Restart> {
        Some(match s {
            "no" => Restart::No,
            "always" => Restart::Always,
            "unless-stopped" => Restart::UnlessStopped,
            "on-failure" => Restart::OnFailure(None),
            _ => Restart::OnFailure(Some(s.strip_prefix("on-failure:")?.parse().ok()?)),
        })
    }

    pub fn name(self) -> String {
        match self {
            Restart::No => "no".into(),
            Restart::OnFailure(None) => "on-failure".into(),
            Restart::OnFailure(Some(n)) => format!("on-failure:{n}"),
            Restart::Always => "always".into(),
            Restart::UnlessStopped => "unless-stopped".into(),
        }
    }

    /// Whether a container that ended with `code`, restarted `restarts` times so far, starts
    /// again. A stop or kill by the user ends every policy (as `docker stop` does).
    pub fn again(self, code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            Restart::No => false,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
            Restart::Always | Restart::UnlessStopped => true,
        }
    }
}

/// Docker's back-off before a restart: 100 ms, doubled each time, at most a minute.
pub fn restart_delay(restarts: u32) -> Duration {
    Duration::from_millis(100u64 << restarts.min(10)).min(Duration::from_secs(60))
}

/// A JSON string literal of `s` (the loader writes its JSON by hand: no serializer in it).
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 in UTC with nanoseconds, as Docker writes times: `2024-05-01T12:00:00.000000001Z`.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since_epoch.subsec_nanos()
    )
}

/// One json-file log line (with its newline) for `text` written to `stream` at `time`.
pub fn log_line(text: &[u8], stream: &str, time: &str) -> String {
    let mut s = String::with_capacity(text.len() + 64);
    s.push_str("{\"log\":");
    json_str(&mut s, &String::from_utf8_lossy(text));
    s.push_str(",\"stream\":");
    json_str(&mut s, stream);
    s.push_str(",\"time\":");
    json_str(&mut s, time);
    s.push_str("}\n");
    s
}

/// What `state.json` holds. Texts are lossy UTF-8 (JSON has no bytes). The loader writes it by
/// hand (no serde in the loader); the packager reads it through the `serde` feature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct State {
    /// 64 lowercase hex digits, random.
    pub id: String,
    pub name: String,
    /// `running`, `restarting` or `exited`.
    pub status: String,
    /// The process that supervises the run (and restarts it), and the container's PID 1, as
    /// host pids with their start times (field 22 of /proc/PID/stat): a pid whose start time
    /// differs was reused by a stranger.
    pub supervisor_pid: i32,
    pub supervisor_start: u64,
    pub pid: i32,
    pub pid_start: u64,
    /// The file that runs it, and its image's name.
    pub file: String,
    pub image: String,
    pub command: Vec<String>,
    /// What `oci2bin exec` needs: the container's environment, user and working directory.
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub hostname: String,
    pub created: String,
    pub started: String,
    pub finished: String,
    pub exit_code: Option<i32>,
    pub restart_policy: String,
    pub restart_count: u32,
    pub stop_signal: i32,
    /// Seconds; `None` waits for ever.
    pub stop_timeout: Option<u32>,
    pub detached: bool,
    /// `--rm`: the state goes when the run ends.
    pub auto_remove: bool,
    /// The run's security, which `oci2bin exec` gives its commands too: the capability flags as
    /// given, `--privileged`, no_new_privs, and whether it installed a seccomp filter (kept in
    /// [`SECCOMP`] beside the state, so an exec gets the very same one).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    pub seccomp: bool,
    /// `-p`: the ports published on the host (a random one chosen where none was given).
    pub ports: Vec<Port>,
    /// The named volumes the run mounts (`oci2bin volume rm` names their users).
    pub volumes: Vec<String>,
}

/// One published port, as `docker port` shows it: `host_ip:host_port` on the host forwards to
/// the container's `container_port/protocol`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Port {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl State {
    pub fn to_json(&self) -> String {
        let mut o = String::with_capacity(1024);
        let list = |o: &mut String, v: &[String]| {
            o.push('[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                json_str(o, s);
            }
            o.push(']');
        };
        o.push('{');
        for (k, v) in [
            ("id", &self.id),
            ("name", &self.name),
            ("status", &self.status),
            ("file", &self.file),
            ("image", &self.image),
            ("user", &self.user),
            ("workdir", &self.workdir),
            ("hostname", &self.hostname),
            ("created", &self.created),
            ("started", &self.started),
            ("finished", &self.finished),
            ("restart_policy", &self.restart_policy),
        ] {
            json_str(&mut o, k);
            o.push(':');
            json_str(&mut o, v);
            o.push(',');
        }
        let code = self.exit_code.map_or("null".into(), |c| c.to_string());
        let timeout = self.stop_timeout.map_or("null".into(), |c| c.to_string());
        let _ = write!(
            o,
            "\"supervisor_pid\":{},\"supervisor_start\":{},\"pid\":{},\"pid_start\":{},\
             \"exit_code\":{code},\"restart_count\":{},\"stop_signal\":{},\"stop_timeout\":{timeout},\
             \"detached\":{},\"auto_remove\":{},\"privileged\":{},\"no_new_privileges\":{},\
             \"seccomp\":{},\"cap_add\":",
            self.supervisor_pid,
            self.supervisor_start,
            self.pid,
            self.pid_start,
            self.restart_count,
            self.stop_signal,
            self.detached,
            self.auto_remove,
            self.privileged,
            self.no_new_privileges,
            self.seccomp
        );
        list(&mut o, &self.cap_add);
        o.push_str(",\"cap_drop\":");
        list(&mut o, &self.cap_drop);
        o.push_str(",\"command\":");
        list(&mut o, &self.command);
        o.push_str(",\"env\":");
        list(&mut o, &self.env);
        o.push_str(",\"ports\":[");
        for (i, p) in self.ports.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"host_ip\":");
            json_str(&mut o, &p.host_ip);
            let _ = write!(
                o,
                ",\"host_port\":{},\"container_port\":{},\"protocol\":",
                p.host_port, p.container_port
            );
            json_str(&mut o, &p.protocol);
            o.push('}');
        }
        o.push_str("],\"volumes\":");
        list(&mut o, &self.volumes);
        o.push_str("}\n");
        o
    }
}

/// The value of the top-level member `key` of a state's JSON as [`State::to_json`] writes it
/// (the loader has no JSON parser): a string's text (read for names, hex IDs and status words,
/// which hold nothing escaped), else a number, `null` or `true` up to the next `,` `}` or blank
/// (spaces after the colon are skipped, as serde_json's pretty form has one).
/// A quote inside a JSON string is escaped, so `"key":` can only be a member; nested objects
/// (ports) have no member of the names read.
pub fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let v = json[at..].trim_start_matches(' ');
    match v.strip_prefix('"') {
        Some(s) => s.split('"').next(),
        None => v.split([',', '}', ' ', '\n']).next(),
    }
}

/// The start time (clock ticks after boot, field 22) in the text of `/proc/PID/stat`; the
/// command name in field 2 may hold spaces and parentheses, so fields count from the last `)`.
pub fn start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["web", "a", "Web-1.b_c", "0x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-web", ".hidden", "_x", "a/b", "a b", "ü", "../x"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(!valid_name(&"a".repeat(129)));
    }

    #[test]
    fn restart_policies_parse_as_docker_writes_them() {
        assert_eq!(Restart::parse("no"), Some(Restart::No));
        assert_eq!(Restart::parse("on-failure"), Some(Restart::OnFailure(None)));
        assert_eq!(
            Restart::parse("on-failure:2"),
            Some(Restart::OnFailure(Some(2)))
        );
        assert_eq!(Restart::parse("always"), Some(Restart::Always));
        assert_eq!(
            Restart::parse("unless-stopped"),
            Some(Restart::UnlessStopped)
        );
        for bad in [
            "",
            "sometimes",
            "on-failure:",
            "on-failure:-1",
            "on-failure:x",
            "always:2",
        ] {
            assert_eq!(Restart::parse(bad), None, "{bad}");
        }
        assert_eq!(Restart::OnFailure(Some(3)).name(), "on-failure:3");
    }

    #[test]
    fn on_failure_restarts_failures_up_to_its_count_and_a_stop_ends_every_policy() {
        let p = Restart::OnFailure(Some(2));
        assert!(p.again(1, 0, false));
        assert!(p.again(1, 1, false));
        assert!(!p.again(1, 2, false), "two restarts, then no more");
        assert!(!p.again(0, 0, false), "success is not a failure");
        assert!(Restart::OnFailure(None).again(1, 1000, false));
        assert!(Restart::Always.again(0, 5, false));
        assert!(Restart::UnlessStopped.again(0, 5, false));
        assert!(!Restart::No.again(1, 0, false));
        for p in [
            Restart::Always,
            Restart::UnlessStopped,
            Restart::OnFailure(None),
        ] {
            assert!(!p.again(1, 0, true), "{p:?} after a stop");
        }
    }

    #[test]
    fn restart_delays_double_from_100ms_to_a_minute() {
        assert_eq!(restart_delay(0), Duration::from_millis(100));
        assert_eq!(restart_delay(1), Duration::from_millis(200));
        assert_eq!(restart_delay(30), Duration::from_secs(60));
    }

    #[test]
    fn times_are_rfc3339_utc_with_nanoseconds() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(Duration::new(1_700_000_000, 5)),
            "2023-11-14T22:13:20.000000005Z"
        );
        assert_eq!(
            rfc3339(Duration::new(951_782_400, 0)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn log_lines_are_dockers_json_file_format() {
        assert_eq!(
            log_line(b"say \"hi\"\t\x01\n", "stderr", "T"),
            "{\"log\":\"say \\\"hi\\\"\\t\\u0001\\n\",\"stream\":\"stderr\",\"time\":\"T\"}\n"
        );
    }

    #[test]
    fn the_state_is_json_with_every_field() {
        let s = State {
            id: "ab".into(),
            name: "web".into(),
            command: vec!["sh".into(), "-c".into(), "echo \"x\"".into()],
            exit_code: Some(3),
            cap_add: vec!["NET_ADMIN".into()],
            seccomp: true,
            ..State::default()
        };
        let j = s.to_json();
        assert!(j.contains("\"privileged\":false,"), "{j}");
        assert!(j.contains("\"seccomp\":true,"), "{j}");
        assert!(
            j.contains("\"cap_add\":[\"NET_ADMIN\"],\"cap_drop\":[],"),
            "{j}"
        );
        assert!(j.starts_with("{\"id\":\"ab\",\"name\":\"web\","), "{j}");
        assert!(j.contains("\"exit_code\":3,"), "{j}");
        assert!(j.contains("\"stop_timeout\":null,"), "{j}");
        assert!(
            j.contains("\"command\":[\"sh\",\"-c\",\"echo \\\"x\\\"\"]"),
            "{j}"
        );
        assert!(
            j.ends_with("\"env\":[],\"ports\":[],\"volumes\":[]}\n"),
            "{j}"
        );
        let s = State {
            ports: vec![Port {
                host_ip: "0.0.0.0".into(),
                host_port: 32768,
                container_port: 80,
                protocol: "tcp".into(),
            }],
            volumes: vec!["data".into()],
            ..State::default()
        };
        assert!(s.to_json().ends_with(
            "\"ports\":[{\"host_ip\":\"0.0.0.0\",\"host_port\":32768,\"container_port\":80,\
             \"protocol\":\"tcp\"}],\"volumes\":[\"data\"]}\n"
        ));
    }

    #[test]
    fn fields_are_read_from_the_state_we_write_and_not_from_inside_strings() {
        let s = State {
            id: "ab12".into(),
            name: "web".into(),
            status: "running".into(),
            pid: 42,
            pid_start: 98765,
            // Keys inside strings are not members.
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo \"pid\":7 \"name\":\"x\"".into(),
            ],
            ports: vec![Port::default()],
            ..State::default()
        };
        let j = s.to_json();
        let get = |k| field(&j, k);
        assert_eq!(
            (get("id"), get("name"), get("status")),
            (Some("ab12"), Some("web"), Some("running"))
        );
        assert_eq!((get("pid"), get("pid_start")), (Some("42"), Some("98765")));
        assert_eq!((get("exit_code"), get("nope")), (Some("null"), None));
        // serde_json's pretty form, as a test or a person may write one.
        let pretty = "{\n  \"command\": [\"x\"],\n  \"pid\": 42,\n  \"status\": \"exited\"\n}";
        assert_eq!(field(pretty, "pid"), Some("42"));
        assert_eq!(field(pretty, "status"), Some("exited"));
    }

    #[test]
    fn start_times_are_read_after_the_command_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2";
        assert_eq!(start_time(stat), Some(98765));
        assert_eq!(start_time("garbage"), None);
    }
}
