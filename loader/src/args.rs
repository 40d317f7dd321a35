//! Runtime flags: `./file [OPTIONS] [--] [COMMAND [ARG...]]`.
//!
//! A small table-driven parser (no clap: the loader must stay small). Every option is one row of
//! [`OPTIONS`]; adding a flag is adding a row and a field. Docker/pflag conventions: `--flag VALUE`
//! and `--flag=VALUE`, `-e VALUE`, `-eVALUE`, clustered short flags, `--` ends options, and the
//! first non-option argument starts the command.

use std::fmt;

/// What an option sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    Entrypoint,
    Workdir,
    Env,
    EnvFile,
    User,
    Init,
    Help,
    Version,
}

struct Opt {
    long: &'static str,
    short: Option<char>,
    /// The value's name in the help text; `None` for a boolean flag.
    value: Option<&'static str>,
    id: Id,
    help: &'static str,
}

const OPTIONS: &[Opt] = &[
    Opt {
        long: "entrypoint",
        short: None,
        value: Some("CMD"),
        id: Id::Entrypoint,
        help:
            "run CMD instead of the image's entrypoint (and drop the image's command); '' clears it",
    },
    Opt {
        long: "workdir",
        short: Some('w'),
        value: Some("DIR"),
        id: Id::Workdir,
        help: "working directory inside the container (created if missing)",
    },
    Opt {
        long: "env",
        short: Some('e'),
        value: Some("K=V"),
        id: Id::Env,
        help: "set an environment variable; a bare K copies it from the host",
    },
    Opt {
        long: "env-file",
        short: None,
        value: Some("FILE"),
        id: Id::EnvFile,
        help: "read K=V lines from FILE (repeatable; -e wins over files)",
    },
    Opt {
        long: "user",
        short: Some('u'),
        value: Some("UID[:GID]"),
        id: Id::User,
        help: "run as this user (number, or a name from the image's /etc/passwd)",
    },
    Opt {
        long: "init",
        short: None,
        value: None,
        id: Id::Init,
        help: "run a tiny init as PID 1 that forwards signals and reaps zombies",
    },
    Opt {
        long: "help",
        short: Some('h'),
        value: None,
        id: Id::Help,
        help: "print this help",
    },
    Opt {
        long: "version",
        short: None,
        value: None,
        id: Id::Version,
        help: "print the version",
    },
];

/// The parsed runtime flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    pub workdir: Option<String>,
    /// `-e` values in order: `K=V`, or a bare `K` to copy from the host.
    pub env: Vec<String>,
    /// `--env-file` paths in order.
    pub env_files: Vec<String>,
    pub user: Option<String>,
    pub init: bool,
    /// The command and its arguments (replaces the image's Cmd when not empty).
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Flags),
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    Unknown {
        option: String,
        suggestion: Option<&'static str>,
    },
    MissingValue {
        option: String,
    },
    UnexpectedValue {
        option: String,
    },
    NotUtf8 {
        arg: String,
    },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Unknown {
                option,
                suggestion: Some(s),
            } => {
                write!(f, "unknown option '{option}' (did you mean '--{s}'?)")
            }
            ArgsError::Unknown {
                option,
                suggestion: None,
            } => {
                write!(f, "unknown option '{option}' (see --help)")
            }
            ArgsError::MissingValue { option } => write!(f, "option '{option}' needs a value"),
            ArgsError::UnexpectedValue { option } => {
                write!(f, "option '{option}' takes no value (use true or false)")
            }
            ArgsError::NotUtf8 { arg } => write!(f, "argument is not valid UTF-8: {arg}"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Parses the arguments after the program name (the image's default args, then the user's).
pub fn parse<I, S>(args: I) -> Result<Parsed, ArgsError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let mut args = args.into_iter().map(|a| {
        a.into().into_string().map_err(|a| ArgsError::NotUtf8 {
            arg: a.to_string_lossy().into(),
        })
    });
    let mut flags = Flags::default();
    while let Some(arg) = args.next() {
        let arg = arg?;
        if arg == "--" {
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let opt =
                OPTIONS
                    .iter()
                    .find(|o| o.long == name)
                    .ok_or_else(|| ArgsError::Unknown {
                        option: format!("--{name}"),
                        suggestion: suggest(name),
                    })?;
            let value = match (opt.value, inline) {
                (Some(_), Some(v)) => Some(v),
                (Some(_), None) => Some(next_value(&mut args, &format!("--{name}"))?),
                (None, Some(v)) => Some(bool_value(&v, &format!("--{name}"))?),
                (None, None) => None,
            };
            if let Some(done) = apply(&mut flags, opt.id, value) {
                return Ok(done);
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            // A cluster of short options: `-e K=V`, `-eK=V`, later also `-it`.
            let cluster = &arg[1..];
            for (i, c) in cluster.char_indices() {
                let opt = OPTIONS.iter().find(|o| o.short == Some(c)).ok_or_else(|| {
                    ArgsError::Unknown {
                        option: format!("-{c}"),
                        suggestion: None,
                    }
                })?;
                if opt.value.is_some() {
                    let rest = &cluster[i + c.len_utf8()..];
                    let value = if rest.is_empty() {
                        next_value(&mut args, &format!("-{c}"))?
                    } else {
                        rest.to_string()
                    };
                    if let Some(done) = apply(&mut flags, opt.id, Some(value)) {
                        return Ok(done);
                    }
                    break;
                }
                if let Some(done) = apply(&mut flags, opt.id, None) {
                    return Ok(done);
                }
            }
        } else {
            flags.command.push(arg);
            break;
        }
    }
    for arg in args {
        flags.command.push(arg?);
    }
    Ok(Parsed::Run(flags))
}

fn next_value(
    args: &mut impl Iterator<Item = Result<String, ArgsError>>,
    option: &str,
) -> Result<String, ArgsError> {
    match args.next() {
        Some(v) => v,
        None => Err(ArgsError::MissingValue {
            option: option.to_string(),
        }),
    }
}

/// `--init=true` / `--init=false`, as pflag allows for booleans.
fn bool_value(v: &str, option: &str) -> Result<String, ArgsError> {
    match v {
        "true" | "1" => Ok("true".into()),
        "false" | "0" => Ok("false".into()),
        _ => Err(ArgsError::UnexpectedValue {
            option: option.to_string(),
        }),
    }
}

/// Stores one option; returns the final result for options that end parsing.
fn apply(flags: &mut Flags, id: Id, value: Option<String>) -> Option<Parsed> {
    let on = || value.as_deref() != Some("false");
    match id {
        Id::Entrypoint => flags.entrypoint = value,
        Id::Workdir => flags.workdir = value,
        Id::Env => flags.env.extend(value),
        Id::EnvFile => flags.env_files.extend(value),
        Id::User => flags.user = value,
        Id::Init => flags.init = on(),
        Id::Help => return on().then_some(Parsed::Help),
        Id::Version => return on().then_some(Parsed::Version),
    }
    None
}

/// The closest long option to a mistyped one, if it is close enough to be what was meant.
fn suggest(name: &str) -> Option<&'static str> {
    let (dist, best) = OPTIONS
        .iter()
        .map(|o| (edit_distance(name, o.long), o.long))
        .min()?;
    (dist <= 2.max(name.len() / 3) && dist < name.len()).then_some(best)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d: Vec<usize> = vec![0; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The `--help` text: every runtime option, generated from the table.
pub fn help_text(program: &str, image: &str) -> String {
    let mut s = format!(
        "Usage: {program} [OPTIONS] [--] [COMMAND [ARG...]]\n\n\
         Runs the image {image} in a rootless container.\n\
         The first argument that is not an option starts the command (it replaces the image's\n\
         Cmd); everything after it is passed to the command. '--' ends the options.\n\n\
         Options:\n"
    );
    for o in OPTIONS {
        let mut left = match o.short {
            Some(c) => format!("  -{c}, --{}", o.long),
            None => format!("      --{}", o.long),
        };
        if let Some(v) = o.value {
            left.push(' ');
            left.push_str(v);
        }
        s.push_str(&format!("{left:<30} {}\n", o.help));
    }
    s
}

/// Reads every `--env-file` in order: `(path, contents)`.
pub fn read_env_files(flags: &Flags) -> Result<Vec<(String, String)>, EnvFileError> {
    flags
        .env_files
        .iter()
        .map(|p| match std::fs::read_to_string(p) {
            Ok(s) => Ok((p.clone(), s)),
            Err(source) => Err(EnvFileError {
                path: p.clone(),
                source,
            }),
        })
        .collect()
}

#[derive(Debug)]
pub struct EnvFileError {
    pub path: String,
    pub source: std::io::Error,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "read env file {}: {}", self.path, self.source)
    }
}

impl std::error::Error for EnvFileError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Flags {
        match parse(args.iter().map(|s| s.to_string())) {
            Ok(Parsed::Run(f)) => f,
            other => panic!("{args:?} parsed to {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        parse(args.iter().map(|s| s.to_string()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn no_arguments_means_the_image_defaults() {
        assert_eq!(run(&[]), Flags::default());
    }

    #[test]
    fn every_value_flag_takes_both_forms() {
        for (form_a, form_b) in [
            (
                vec!["--entrypoint", "/bin/sh"],
                vec!["--entrypoint=/bin/sh"],
            ),
            (vec!["--workdir", "/srv"], vec!["--workdir=/srv"]),
            (vec!["-w", "/srv"], vec!["-w/srv"]),
            (vec!["--env", "A=1"], vec!["--env=A=1"]),
            (vec!["-e", "A=1"], vec!["-eA=1"]),
            (vec!["--env-file", "f"], vec!["--env-file=f"]),
            (vec!["--user", "1000:1000"], vec!["--user=1000:1000"]),
            (vec!["-u", "1000"], vec!["-u1000"]),
        ] {
            assert_eq!(run(&form_a), run(&form_b), "{form_a:?} vs {form_b:?}");
        }
    }

    #[test]
    fn flags_land_in_their_fields() {
        let f = run(&[
            "--entrypoint",
            "/bin/sh",
            "-w",
            "/srv",
            "-e",
            "A=1",
            "--env",
            "B",
            "--env-file",
            "x.env",
            "--env-file=y.env",
            "-u",
            "nobody",
            "--init",
        ]);
        assert_eq!(f.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(f.workdir.as_deref(), Some("/srv"));
        assert_eq!(f.env, ["A=1", "B"]);
        assert_eq!(f.env_files, ["x.env", "y.env"]);
        assert_eq!(f.user.as_deref(), Some("nobody"));
        assert!(f.init);
        assert!(f.command.is_empty());
    }

    #[test]
    fn empty_entrypoint_is_kept_as_a_request_to_clear() {
        assert_eq!(run(&["--entrypoint", ""]).entrypoint.as_deref(), Some(""));
        assert_eq!(run(&["--entrypoint="]).entrypoint.as_deref(), Some(""));
    }

    #[test]
    fn first_positional_starts_the_command_and_options_after_it_belong_to_it() {
        let f = run(&["-e", "A=1", "ls", "-l", "--init", "--", "x"]);
        assert_eq!(f.command, ["ls", "-l", "--init", "--", "x"]);
        assert!(!f.init);
    }

    #[test]
    fn double_dash_ends_options() {
        let f = run(&["--init", "--", "--version", "-e"]);
        assert!(f.init);
        assert_eq!(f.command, ["--version", "-e"]);
        assert!(run(&["--"]).command.is_empty());
    }

    #[test]
    fn a_lone_dash_is_a_command() {
        assert_eq!(run(&["-"]).command, ["-"]);
    }

    #[test]
    fn boolean_flags_accept_true_and_false() {
        assert!(run(&["--init=true"]).init);
        assert!(!run(&["--init", "--init=false"]).init);
        assert_eq!(
            err(&["--init=maybe"]),
            "option '--init' takes no value (use true or false)"
        );
    }

    #[test]
    fn help_and_version_end_parsing() {
        let p = |a: &[&str]| parse(a.iter().map(|s| s.to_string())).unwrap();
        assert_eq!(p(&["--help"]), Parsed::Help);
        assert_eq!(p(&["-h"]), Parsed::Help);
        assert_eq!(p(&["-e", "A=1", "--version", "--bogus"]), Parsed::Version);
        // After the command starts, --help is the command's.
        assert!(matches!(p(&["sh", "--help"]), Parsed::Run(_)));
    }

    #[test]
    fn a_typo_gets_a_suggestion() {
        assert_eq!(
            err(&["--wrokdir", "/x"]),
            "unknown option '--wrokdir' (did you mean '--workdir'?)"
        );
        assert_eq!(
            err(&["--env-fil=x"]),
            "unknown option '--env-fil' (did you mean '--env-file'?)"
        );
        assert!(err(&["--entrypiont", "x"]).contains("'--entrypoint'"));
        assert_eq!(
            err(&["--frobnicate"]),
            "unknown option '--frobnicate' (see --help)"
        );
        assert_eq!(err(&["-x"]), "unknown option '-x' (see --help)");
    }

    #[test]
    fn a_missing_value_is_an_error() {
        assert_eq!(err(&["--workdir"]), "option '--workdir' needs a value");
        assert_eq!(err(&["-e"]), "option '-e' needs a value");
        assert_eq!(err(&["--user"]), "option '--user' needs a value");
    }

    #[test]
    fn values_may_look_like_options() {
        assert_eq!(run(&["-e", "--weird"]).env, ["--weird"]);
        assert_eq!(
            run(&["--entrypoint", "-x"]).entrypoint.as_deref(),
            Some("-x")
        );
    }

    #[test]
    fn image_default_args_come_first_and_user_args_override() {
        let defaults = ["--workdir", "/a", "-e", "A=1"];
        let user = ["--workdir", "/b", "echo", "hi"];
        let f = run(&defaults
            .iter()
            .chain(user.iter())
            .copied()
            .collect::<Vec<_>>());
        assert_eq!(f.workdir.as_deref(), Some("/b"));
        assert_eq!(f.env, ["A=1"]);
        assert_eq!(f.command, ["echo", "hi"]);
    }

    #[test]
    fn help_lists_every_option_and_the_rules() {
        let h = help_text("./busybox", "busybox:latest");
        for o in OPTIONS {
            assert!(
                h.contains(&format!("--{}", o.long)),
                "help lacks --{}",
                o.long
            );
        }
        assert!(h.contains("'--' ends the options"));
        assert!(h.contains("first argument that is not an option starts the command"));
        assert!(h.contains("busybox:latest"));
    }

    #[test]
    fn env_files_are_read_in_order_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.env");
        std::fs::write(&a, "A=1\n").unwrap();
        let flags = Flags {
            env_files: vec![a.to_str().unwrap().into(), "/nonexistent/x.env".into()],
            ..Flags::default()
        };
        let e = read_env_files(&flags).unwrap_err().to_string();
        assert!(e.starts_with("read env file /nonexistent/x.env: "), "{e}");
        let flags = Flags {
            env_files: vec![a.to_str().unwrap().into()],
            ..Flags::default()
        };
        assert_eq!(read_env_files(&flags).unwrap()[0].1, "A=1\n");
    }

    #[test]
    fn edit_distance_counts_transpositions_as_one() {
        assert_eq!(edit_distance("wrokdir", "workdir"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("init", "init"), 0);
    }
}
