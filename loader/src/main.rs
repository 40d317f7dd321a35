//! The loader: the program at the head of every oci2bin file. Reads its own trailer, parses the
//! runtime flags, gets the image's root filesystem from the cache, plans the run and executes it,
//! and exits with the container's status (125 for a failure of its own).

#[cfg(target_env = "musl")]
mod nounwind;

use loader::format::{FORMAT_MAJOR, FORMAT_MINOR};
use loader::{
    args, cache, exec, extract, host, lifecycle, plan, selfexe, shim, storage, sys, verify,
};
use std::error::Error;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::exit;

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Bind-mounted over gosu/su-exec/setpriv inside a container: act as that program. Under
    // such a name anywhere else, the file is an image like any other.
    if let Some(name) = argv.first().and_then(|a| shim::shim_name(a)) {
        if shim::bound_by_loader() {
            exit(run_shim(name, &argv[1..]));
        }
    }
    match run(argv) {
        Ok(code) => exit(code),
        Err(e) => {
            eprintln!("oci2bin: {e}");
            exit(exec::EXIT_OURS)
        }
    }
}

/// `--vm`: the VM runtime this file carries, copied into the cache once, runs in our place
/// with the file open as a descriptor (its /proc/self/exe is the runtime). Returns only on
/// failure.
fn start_vm(me: &selfexe::SelfExe, program: &str, args: Vec<OsString>) -> Box<dyn Error> {
    use loader::format::VmPartKind;
    use std::os::fd::{AsFd, AsRawFd};
    let runtime = match loader::vm::parts::get(&me.file, &me.runtime.vm_parts, VmPartKind::Runtime)
    {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    if let Err(e) = sys::ns::keep_on_exec(me.file.as_fd()) {
        return format!("keep the file open for the VM runtime: {e}").into();
    }
    let cstr = |b: &[u8]| CString::new(b).unwrap_or_default();
    let argv: Vec<CString> = std::iter::once(cstr(program.as_bytes()))
        .chain(args.iter().map(|a| cstr(a.as_bytes())))
        .collect();
    let fd_var = format!("{}={}", loader::vm::FILE_FD_ENV, me.file.as_raw_fd());
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .chain(std::iter::once(fd_var.into_bytes()))
        .map(|e| cstr(&e))
        .collect();
    let e = sys::ns::execve(&cstr(runtime.as_os_str().as_bytes()), &argv, &env);
    format!("start the VM runtime {}: {e}", runtime.display()).into()
}

fn version() -> String {
    format!(
        "oci2bin loader {} (format {FORMAT_MAJOR}.{FORMAT_MINOR})",
        env!("CARGO_PKG_VERSION")
    )
}

fn run(argv: Vec<OsString>) -> Result<i32, Box<dyn Error>> {
    // `oci2bin exec` runs the file this way to join a running container of it.
    if let Some(pid) = std::env::var_os(loader::containers::EXEC_INTO) {
        return lifecycle::exec_into(&pid, argv.into_iter().skip(1).collect());
    }
    let me = match selfexe::open() {
        Ok(me) => me,
        Err(_) if argv.get(1).is_some_and(|a| a == "--version") => {
            println!("{}", version());
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    let rt = &me.runtime;
    let program = argv
        .first()
        .map_or("oci2bin".into(), |a| a.to_string_lossy().into_owned());
    let user_args: Vec<OsString> = argv.into_iter().skip(1).collect();
    let all = rt
        .default_args
        .iter()
        .map(OsString::from)
        .chain(user_args.iter().cloned());
    let mut flags = match args::parse(all)? {
        args::Parsed::Help => {
            print!("{}", args::help_text(&program, &rt.name));
            return Ok(0);
        }
        args::Parsed::Version => {
            println!("{}", version());
            return Ok(0);
        }
        args::Parsed::Run(flags) => flags,
    };
    // Before anything that reads the image, the cache among it.
    verify::check_required(&me)?;
    if let Some(key) = &flags.verify_key {
        verify::check(&me, key)?;
    }
    if flags.vm {
        return Err(start_vm(&me, &program, user_args));
    }
    lifecycle::check(&flags)?;
    // Before the cache's work: a container to join that is not running stops the start at once.
    let peers = lifecycle::peers(&flags)?;
    let env_files = args::read_env_files(&flags)?;
    let own = (sys::ns::euid(), sys::ns::egid());
    // A subordinate range is mapped first: the rootfs of a mapped run is extracted (and later
    // run) inside that namespace, so files keep the owners the layers give them.
    let mapping = match flags.userns {
        args::Userns::Single => None,
        // A run that joins another container's namespaces takes that one's user namespace.
        args::Userns::Auto if plan::net::joins(&flags) => None,
        mode => plan::userns(mode, &host::id_facts())?,
    };
    let (ids, key) = match &mapping {
        None => (plan::IdMode::Single, None),
        Some(m) => match exec::enter_mapped(m) {
            Ok(()) => (
                plan::IdMode::Mapped { keep_id: m.keep_id },
                Some(m.key_text()),
            ),
            Err(e) if m.fallback => {
                eprintln!(
                    "oci2bin: warning: cannot map the subordinate ids ({e}); running with a \
                     single uid (--userns single skips this)"
                );
                (plan::IdMode::Single, None)
            }
            Err(e) => return Err(e.into()),
        },
    };
    // Kept alive until the run ends: it holds the cache locks of the run.
    let mut prepared = match cache::prepare(&me.file, rt, key.as_deref()) {
        // ^C during extraction: the partial tree is gone; die of the signal, as a shell expects.
        Err(cache::CacheError::Interrupted(sig)) => loader::sys::sig::die_of(sig),
        r => r?,
    };
    let (root, scratch) = (prepared.rootfs.clone(), prepared.scratch.clone());
    let storage = storage::setup(&mut flags, prepared.cleanup.as_deref(), &mut prepared.hold)?;
    let upper = storage.upper.clone();
    let result = host::free_ports(&mut flags)
        .map_err(Box::<dyn Error>::from)
        .and_then(|()| {
            host::gather(
                root,
                scratch,
                env_files,
                ids,
                own,
                flags.hostname.clone(),
                &flags.mounts,
            )
            .map_err(|e| format!("gather host facts: {e}").into())
        })
        .map(|facts| plan::HostFacts {
            upper,
            peers,
            ..facts
        })
        .map(|mut facts| {
            let wanted = plan::resources::controllers(&flags.resources);
            if !wanted.is_empty() {
                facts.cgroups = loader::cgroup::facts(&wanted);
            }
            facts
        })
        .and_then(|mut facts| {
            facts.security = host::security_facts(&flags.security);
            Ok(plan::plan(rt, &flags, &facts)?)
        })
        .and_then(|steps| {
            let file = std::fs::read_link("/proc/self/exe").unwrap_or_default();
            let file = file.to_string_lossy();
            Ok(lifecycle::run(&steps, &flags, &file, &rt.name)?)
        });
    storage.finish();
    if let Some(dir) = &prepared.cleanup {
        if let Err(e) = extract::remove_tree(dir) {
            eprintln!("oci2bin: warning: remove {}: {e}", dir.display());
        }
    }
    result
}

/// Runs as gosu/su-exec/setpriv: execs the command when it asks for no other identity than
/// ours; otherwise says why it cannot and fails, as the real program would.
fn run_shim(name: &str, args: &[OsString]) -> i32 {
    let etc = |f: &str| std::fs::read_to_string(f).ok();
    let checked = shim::parse(name, args).and_then(|inv| {
        let (passwd, group) = (etc("/etc/passwd"), etc("/etc/group"));
        let (uid, gid) = (sys::ns::euid(), sys::ns::egid());
        shim::check_identity(name, &inv, uid, gid, passwd.as_deref(), group.as_deref())?;
        Ok(inv.command)
    });
    let cmd = match checked {
        Ok(cmd) => cmd,
        Err(e) => {
            eprintln!("oci2bin: {e}");
            return 1;
        }
    };
    let to_c = |v: Vec<u8>| CString::new(v).unwrap_or_default();
    let argv: Vec<CString> = cmd.into_iter().map(|a| to_c(a.into_vec())).collect();
    let mut path = plan::DEFAULT_PATH.as_bytes().to_vec();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            if k == "PATH" {
                path = v.as_bytes().to_vec();
            }
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            to_c(kv)
        })
        .collect();
    let e = exec::exec_command(&argv, &env, &path);
    eprintln!("oci2bin: {e}");
    e.code
}
