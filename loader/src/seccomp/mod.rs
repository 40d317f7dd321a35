//! Seccomp: Docker's JSON profiles compiled to classic BPF, with no dependencies, so that the
//! packager (at build time, for the default profile) and the loader (at run time, for
//! `--seccomp-profile FILE`) share one compiler.
//!
//! The schema is the one Docker ships (moby `profiles/seccomp`): `defaultAction`,
//! `defaultErrnoRet`, `architectures` or `archMap`, and `syscalls[]` with `names` (or `name`),
//! `action`, `errnoRet`, `args[]` (`index`, `value`, `valueTwo`, `op`), `includes` and `excludes`
//! by `caps`, `arches` and `minKernel`; unknown members (`comment`, …) are ignored as Go's
//! decoder ignores them. Rules are resolved as Docker resolves them (an include needs every
//! capability it names, an exclude fires on any), then compiled as runc hands them to
//! libseccomp: names the table does not know are skipped, a rule whose action is the default is
//! left out, arguments compared on all 64 bits, several conditions on one argument become
//! separate rules (OR), on different arguments one rule (AND). For one call, the rules are tried
//! in profile order and the first that matches decides; none matching means the default.
//!
//! As runc does, a call newer than every call the profile names answers ENOSYS rather than the
//! default (so a libc falls back as on an older kernel), unless the default is permissive.
//!
//! The filter checks the architecture: only native x86_64 calls are matched; an i386 (`int
//! 0x80`) or x32 call gets the default action (Docker's profile also lists those ABIs: we have
//! no tables for them yet).

pub mod json;
mod table_x86_64;

use crate::caps::{self, CapSet};
use json::Value;

/// Docker's default profile (see `docker-default.NOTICE.md`).
pub const DOCKER_DEFAULT: &str = include_str!("docker-default.json");

/// `AUDIT_ARCH_X86_64`: what `seccomp_data.arch` holds for a native call.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 calls are native-arch calls with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The kernel refuses longer programs (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const AND_K: u16 = 0x54;
const JA: u16 = 0x05;
const RET_K: u16 = 0x06;

// seccomp return values (linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// What the profile's includes and excludes are resolved against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The container's capabilities (Docker resolves against the bounding set).
    pub caps: CapSet,
    /// The running kernel's (major, minor), for `minKernel`.
    pub kernel: (u32, u32),
}

/// A compiled filter and what its compilation depended on, so that a filter compiled ahead
/// (by the packager) can be checked to still hold for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub insns: Vec<Insn>,
    /// The capabilities the profile's includes/excludes name: a run whose set differs from the
    /// compiled one only outside these gets the same filter.
    pub caps_named: CapSet,
    /// The highest `minKernel` the profile names: on a kernel at least this new, every
    /// `minKernel` condition resolves as on the newest kernel.
    pub newest_min_kernel: (u32, u32),
}

/// The syscall number of `name` on x86_64.
pub fn syscall_number(name: &str) -> Option<u32> {
    let t = table_x86_64::X86_64;
    t.binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| t[i].1 as u32)
}

/// `seccomp_data` offsets.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARGS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cond {
    index: u32,
    op: Op,
    value: u64,
    value_two: u64,
}

/// One rule of one call: all conditions must hold.
struct Rule {
    nr: u32,
    conds: Vec<Cond>,
    ret: u32,
}

/// Parses and compiles a profile for `target`. Errors are one line, naming the member.
pub fn compile(profile: &[u8], target: Target) -> Result<Compiled, String> {
    let doc = json::parse(profile)?;
    if !matches!(doc, Value::Obj(_)) {
        return Err("the profile is not a JSON object".into());
    }
    let default_errno = match doc.get("defaultErrnoRet") {
        None | Some(Value::Null) => EPERM,
        Some(v) => errno(v, "defaultErrnoRet")?,
    };
    let default = action(
        doc.get("defaultAction")
            .ok_or("the profile has no defaultAction")?,
        "defaultAction",
        Some(default_errno),
    )?;
    check_arches(&doc)?;
    let mut caps_named: CapSet = 0;
    let mut newest: (u32, u32) = (0, 0);
    let mut rules = Vec::new();
    // The highest call number the profile names, whether its rule applies or not.
    let mut newest_call: Option<u32> = None;
    let calls = match doc.get("syscalls") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Arr(a)) => &a[..],
        Some(_) => return Err("syscalls is not an array".into()),
    };
    for (i, call) in calls.iter().enumerate() {
        let at = |what: &str| format!("syscalls[{i}].{what}");
        if !matches!(call, Value::Obj(_)) {
            return Err(format!("syscalls[{i}] is not an object"));
        }
        let mut applies = true;
        for (key, include) in [("includes", true), ("excludes", false)] {
            let Some(f) = call.get(key).filter(|v| **v != Value::Null) else {
                continue;
            };
            let (hit, named, kernel) =
                filter(f, target, include).map_err(|e| at(&format!("{key}.{e}")))?;
            caps_named |= named;
            newest = newest.max(kernel);
            applies &= hit;
        }
        let errno_ret = match call.get("errnoRet") {
            None | Some(Value::Null) => None,
            Some(v) => Some(errno(v, &at("errnoRet"))?),
        };
        let ret = action(
            call.get("action").ok_or_else(|| at("action is missing"))?,
            &at("action"),
            errno_ret,
        )?;
        let names = names(call).map_err(|e| at(&e))?;
        for n in &names {
            newest_call = newest_call.max(syscall_number(n));
        }
        let conds = args(call).map_err(|e| at(&e))?;
        if !applies || ret == default {
            continue;
        }
        // runc: several conditions on one argument are separate rules (any may match).
        let mut seen = [0u8; 6];
        for c in &conds {
            seen[c.index as usize] += 1;
        }
        let groups: Vec<Vec<Cond>> = if seen.iter().any(|&n| n > 1) {
            conds.iter().map(|c| vec![*c]).collect()
        } else {
            vec![conds]
        };
        for name in names {
            // Unknown names are skipped, as libseccomp does with calls an arch lacks.
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            for g in &groups {
                rules.push(Rule {
                    nr,
                    conds: g.clone(),
                    ret,
                });
            }
        }
    }
    // runc's stub (patchbpf): calls newer than any the profile knows answer ENOSYS, so a libc
    // falls back to an older call as on an older kernel, unless the default is permissive or
    // already ENOSYS.
    let enosys = match newest_call {
        Some(n) if ![RET_ALLOW, RET_LOG, RET_ERRNO | ENOSYS].contains(&default) => Some(n),
        _ => None,
    };
    let insns = generate(&rules, default, enosys)?;
    Ok(Compiled {
        insns,
        caps_named,
        newest_min_kernel: newest,
    })
}

fn errno(v: &Value, what: &str) -> Result<u32, String> {
    match v {
        Value::Int(n) if (0..=0xffff).contains(n) => Ok(*n as u32),
        _ => Err(format!("{what} is not an errno number")),
    }
}

fn action(v: &Value, what: &str, errno_ret: Option<u32>) -> Result<u32, String> {
    let Value::Str(s) = v else {
        return Err(format!("{what} is not a string"));
    };
    let data = errno_ret.unwrap_or(EPERM);
    Ok(match s.as_str() {
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        "SCMP_ACT_ERRNO" => RET_ERRNO | data,
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => RET_TRAP,
        "SCMP_ACT_TRACE" => RET_TRACE | data,
        "SCMP_ACT_LOG" => RET_LOG,
        "SCMP_ACT_NOTIFY" => {
            return Err(format!(
                "{what}: SCMP_ACT_NOTIFY needs a listener process, which oci2bin does not run"
            ))
        }
        _ => return Err(format!("{what}: unknown action '{s}'")),
    })
}

/// Docker's architecture names (`SCMP_ARCH_*`), checked so that a typo is an error.
const ARCHES: &[&str] = &[
    "X86",
    "X86_64",
    "X32",
    "ARM",
    "AARCH64",
    "MIPS",
    "MIPS64",
    "MIPS64N32",
    "MIPSEL",
    "MIPSEL64",
    "MIPSEL64N32",
    "PPC",
    "PPC64",
    "PPC64LE",
    "S390",
    "S390X",
    "PARISC",
    "PARISC64",
    "RISCV64",
];

fn arch_ok(v: &Value) -> bool {
    matches!(v, Value::Str(s) if s.strip_prefix("SCMP_ARCH_").is_some_and(|a| ARCHES.contains(&a)))
}

fn check_arches(doc: &Value) -> Result<(), String> {
    let list = |v: Option<&Value>, what: &str| -> Result<usize, String> {
        match v {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Arr(a)) => {
                if let Some(bad) = a.iter().find(|x| !arch_ok(x)) {
                    return Err(format!("{what}: unknown architecture {}", shown(bad)));
                }
                Ok(a.len())
            }
            Some(_) => Err(format!("{what} is not an array")),
        }
    };
    let plain = list(doc.get("architectures"), "architectures")?;
    let mut mapped = 0;
    match doc.get("archMap") {
        None | Some(Value::Null) => {}
        Some(Value::Arr(m)) => {
            for (i, e) in m.iter().enumerate() {
                if !e.get("architecture").is_some_and(arch_ok) {
                    return Err(format!(
                        "archMap[{i}].architecture is not a known architecture"
                    ));
                }
                list(
                    e.get("subArchitectures"),
                    &format!("archMap[{i}].subArchitectures"),
                )?;
                mapped += 1;
            }
        }
        Some(_) => return Err("archMap is not an array".into()),
    }
    if plain > 0 && mapped > 0 {
        return Err("the profile has both architectures and archMap: use one".into());
    }
    Ok(())
}

fn shown(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("'{s}'"),
        _ => "(not a string)".into(),
    }
}

fn strings<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a str>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Arr(a) => a
            .iter()
            .map(|x| match x {
                Value::Str(s) => Ok(s.as_str()),
                _ => Err(format!("{what} holds a non-string")),
            })
            .collect(),
        _ => Err(format!("{what} is not an array")),
    }
}

/// One `includes` (`include` = true) or `excludes` object: whether the rule stays, the caps it
/// names, its `minKernel`.
fn filter(f: &Value, t: Target, include: bool) -> Result<(bool, CapSet, (u32, u32)), String> {
    if !matches!(f, Value::Obj(_)) {
        return Err("is not an object".into());
    }
    let mut named = 0;
    let mut has_all = true;
    let mut has_any = false;
    for c in strings(f.get("caps").unwrap_or(&Value::Null), "caps")? {
        let n = caps::number(c).ok_or_else(|| format!("caps: unknown capability '{c}'"))?;
        named |= 1 << n;
        let held = t.caps & (1 << n) != 0;
        has_all &= held;
        has_any |= held;
    }
    // Go's names for this machine's architecture (moby `goToNative`).
    let arches = strings(f.get("arches").unwrap_or(&Value::Null), "arches")?;
    let arch_hit = arches.contains(&"amd64");
    let mut kernel = (0, 0);
    let mut kernel_hit = include;
    match f.get("minKernel") {
        None | Some(Value::Null) => {}
        Some(Value::Str(s)) => {
            kernel = kernel_version(s).ok_or_else(|| format!("minKernel: bad version '{s}'"))?;
            kernel_hit = t.kernel >= kernel;
        }
        Some(_) => return Err("minKernel is not a string".into()),
    }
    let stays = if include {
        (arches.is_empty() || arch_hit) && (named == 0 || has_all) && kernel_hit
    } else {
        !((!arches.is_empty() && arch_hit)
            || (named != 0 && has_any)
            || (kernel != (0, 0) && kernel_hit))
    };
    Ok((stays, named, kernel))
}

/// `MAJOR.MINOR[...]` (a release string as `uname -r` gives it works too).
pub fn kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().unwrap_or("0");
    Some((
        major,
        if minor.is_empty() {
            0
        } else {
            minor.parse().ok()?
        },
    ))
}

fn names(call: &Value) -> Result<Vec<&str>, String> {
    let many = strings(call.get("names").unwrap_or(&Value::Null), "names")?;
    match call.get("name") {
        None | Some(Value::Null) => Ok(many),
        Some(Value::Str(_)) if !many.is_empty() => Err("has both name and names: use one".into()),
        Some(Value::Str(s)) => Ok(vec![s.as_str()]),
        Some(_) => Err("name is not a string".into()),
    }
}

fn args(call: &Value) -> Result<Vec<Cond>, String> {
    let list = match call.get("args") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Arr(a)) => a,
        Some(_) => return Err("args is not an array".into()),
    };
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let num = |key: &str, max: u64| -> Result<u64, String> {
            match a.get(key) {
                None | Some(Value::Null) => Ok(0),
                Some(Value::Int(n)) if *n >= 0 && *n <= max as i128 => Ok(*n as u64),
                Some(_) => Err(format!("args[{i}].{key} is not a number up to {max}")),
            }
        };
        let index = num("index", 5)? as u32;
        let op = match a.get("op") {
            Some(Value::Str(s)) => match s.as_str() {
                "SCMP_CMP_NE" => Op::Ne,
                "SCMP_CMP_LT" => Op::Lt,
                "SCMP_CMP_LE" => Op::Le,
                "SCMP_CMP_EQ" => Op::Eq,
                "SCMP_CMP_GE" => Op::Ge,
                "SCMP_CMP_GT" => Op::Gt,
                "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
                _ => return Err(format!("args[{i}].op: unknown operator '{s}'")),
            },
            _ => return Err(format!("args[{i}].op is missing")),
        };
        out.push(Cond {
            index,
            op,
            value: num("value", u64::MAX)?,
            value_two: num("valueTwo", u64::MAX)?,
        });
    }
    Ok(out)
}

/// A jump target while a rule is laid out: relative to the end of its snippet, or the rule's
/// failure exit.
#[derive(Clone, Copy)]
enum J {
    /// Skip this many instructions of the snippet.
    Skip(u8),
    /// Past the end of the condition's snippet: the condition holds.
    Pass,
    /// The next rule (or the default): the condition fails.
    Fail,
}

fn stmt(code: u16, k: u32) -> (u16, J, J, u32) {
    (code, J::Skip(0), J::Skip(0), k)
}

/// A condition's snippet; `A` is loaded with each half of the argument (little-endian: the low
/// word first in memory).
fn condition(c: &Cond) -> Vec<(u16, J, J, u32)> {
    let lo = ARGS + 8 * c.index;
    let hi = lo + 4;
    let (vh, vl) = ((c.value >> 32) as u32, c.value as u32);
    use J::*;
    match c.op {
        Op::Eq => vec![
            stmt(LD_W_ABS, hi),
            (JEQ_K, Skip(0), Fail, vh),
            stmt(LD_W_ABS, lo),
            (JEQ_K, Pass, Fail, vl),
        ],
        Op::Ne => vec![
            stmt(LD_W_ABS, hi),
            (JEQ_K, Skip(0), Pass, vh),
            stmt(LD_W_ABS, lo),
            (JEQ_K, Fail, Pass, vl),
        ],
        Op::MaskedEq => {
            let (mh, ml) = (vh, vl);
            let (dh, dl) = ((c.value_two >> 32) as u32, c.value_two as u32);
            vec![
                stmt(LD_W_ABS, hi),
                stmt(AND_K, mh),
                (JEQ_K, Skip(0), Fail, dh),
                stmt(LD_W_ABS, lo),
                stmt(AND_K, ml),
                (JEQ_K, Pass, Fail, dl),
            ]
        }
        // a > v: the high words decide unless equal, then the low ones.
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            let (above, low_op, low_hit) = match c.op {
                Op::Gt => (Pass, JGT_K, true),
                Op::Ge => (Pass, JGE_K, true),
                Op::Lt => (Fail, JGE_K, false),
                _ => (Fail, JGT_K, false),
            };
            let below = if matches!(above, Pass) { Fail } else { Pass };
            let (t, f) = if low_hit { (Pass, Fail) } else { (Fail, Pass) };
            vec![
                stmt(LD_W_ABS, hi),
                (JGT_K, above, Skip(0), vh),
                (JEQ_K, Skip(0), below, vh),
                stmt(LD_W_ABS, lo),
                (low_op, t, f, vl),
            ]
        }
    }
}

/// Lays out the program: the architecture check, then a binary search on the call number over
/// the ranges of numbers that share an outcome (the default, ENOSYS above the newest call, one
/// call's block of rules, or an unconditional action shared by neighbouring calls).
///
/// A search rather than one `jeq` per call, as libseccomp's binary-tree option does: a run of the
/// filter costs ~log2 of the ranges, and so does the kernel's emulation of it for every call
/// number when it builds the action cache at install time (linear, Docker's profile made that
/// emulation ~0.3 ms of every start).
fn generate(rules: &[Rule], default: u32, enosys_above: Option<u32>) -> Result<Vec<Insn>, String> {
    let ins = |code, jt, jf, k| Insn { code, jt, jf, k };
    let mut p = vec![
        ins(LD_W_ABS, 0, 0, ARCH),
        ins(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        ins(RET_K, 0, 0, default),
        ins(LD_W_ABS, 0, 0, NR),
        ins(JGE_K, 0, 1, X32_SYSCALL_BIT),
        ins(RET_K, 0, 0, default),
    ];
    let mut nrs: Vec<u32> = rules.iter().map(|r| r.nr).collect();
    nrs.sort_unstable();
    nrs.dedup();
    // (first number, outcome) in order, covering every number from 0.
    let mut ranges: Vec<(u32, Vec<Insn>)> = Vec::new();
    let mut push = |start: u32, block: Vec<Insn>| match ranges.last() {
        Some((_, last)) if *last == block => {}
        _ => ranges.push((start, block)),
    };
    let mut next = 0u32;
    for nr in nrs {
        if nr > next {
            push(next, vec![ins(RET_K, 0, 0, default)]);
        }
        push(nr, block(rules, nr, default)?);
        next = nr + 1;
    }
    push(next, vec![ins(RET_K, 0, 0, default)]);
    if let Some(n) = enosys_above {
        push(n + 1, vec![ins(RET_K, 0, 0, RET_ERRNO | ENOSYS)]);
    }
    p.extend(search(&ranges));
    if p.len() > MAX_INSNS {
        return Err(format!(
            "the filter has {} instructions, more than the kernel's {MAX_INSNS}",
            p.len()
        ));
    }
    Ok(p)
}

/// The rules of call `nr` in profile order, each ending in its action, then the default.
fn block(rules: &[Rule], nr: u32, default: u32) -> Result<Vec<Insn>, String> {
    let ins = |code, jt, jf, k| Insn { code, jt, jf, k };
    let mut block: Vec<Insn> = Vec::new();
    for r in rules.iter().filter(|r| r.nr == nr) {
        if r.conds.is_empty() {
            // Unconditional: it decides, and later rules of this call are unreachable.
            block.push(ins(RET_K, 0, 0, r.ret));
            return Ok(block);
        }
        // The rule's instructions with failure exits left open, then its action.
        let mut body: Vec<(u16, J, J, u32)> = Vec::new();
        for c in &r.conds {
            let snip = condition(c);
            let n = snip.len();
            for (i, (code, jt, jf, k)) in snip.into_iter().enumerate() {
                let fix = |j: J| match j {
                    J::Pass => J::Skip((n - i - 1) as u8),
                    other => other,
                };
                body.push((code, fix(jt), fix(jf), k));
            }
        }
        body.push(stmt(RET_K, r.ret));
        let len = body.len();
        for (i, (code, jt, jf, k)) in body.into_iter().enumerate() {
            // Fail: past this rule's last instruction (its `ret`).
            let fix = |j: J| -> Result<u8, String> {
                match j {
                    J::Skip(n) => Ok(n),
                    J::Fail => u8::try_from(len - i - 1)
                        .map_err(|_| format!("a rule of call {nr} is too long")),
                    J::Pass => unreachable!("resolved per condition"),
                }
            };
            block.push(ins(code, fix(jt)?, fix(jf)?, k));
        }
    }
    block.push(ins(RET_K, 0, 0, default));
    Ok(block)
}

/// A binary search over `ranges` (sorted by first number, the first from 0) with the call
/// number in `A`: each node sends numbers from its middle range's start on to the right half,
/// laid out after the left one; a left half too long for an 8-bit jump is stepped over with
/// `ja`. Every jump is forward, as classic BPF requires.
fn search(ranges: &[(u32, Vec<Insn>)]) -> Vec<Insn> {
    if let [(_, only)] = ranges {
        return only.clone();
    }
    let mid = ranges.len() / 2;
    let (left, right) = (search(&ranges[..mid]), search(&ranges[mid..]));
    let k = ranges[mid].0;
    let mut p = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(skip) => p.push(Insn {
            code: JGE_K,
            jt: skip,
            jf: 0,
            k,
        }),
        Err(_) => {
            p.push(Insn {
                code: JGE_K,
                jt: 0,
                jf: 1,
                k,
            });
            p.push(Insn {
                code: JA,
                jt: 0,
                jf: 0,
                k: left.len() as u32,
            });
        }
    }
    p.extend(left);
    p.extend(right);
    p
}

/// The filter as `struct sock_filter` bytes (native endian), as the runtime record carries it.
pub fn to_bytes(p: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len() * 8);
    for i in p {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

pub fn from_bytes(b: &[u8]) -> Option<Vec<Insn>> {
    if !b.len().is_multiple_of(8) || b.is_empty() || b.len() / 8 > MAX_INSNS {
        return None;
    }
    Some(
        b.chunks_exact(8)
            .map(|c| Insn {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// Runs a filter on one call the way the kernel would (only the instructions [`compile`]
/// emits): the seccomp return value. For tests and `oci2bin` diagnostics.
pub fn evaluate(p: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    run(p, arch, nr, args).0
}

/// [`evaluate`], and how many instructions the answer took.
pub fn run(p: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> (u32, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut a: u32 = 0;
    let (mut pc, mut steps) = (0, 0);
    while let Some(i) = p.get(pc) {
        pc += 1;
        steps += 1;
        let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
        match i.code {
            LD_W_ABS => {
                let o = i.k as usize;
                a = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
            }
            AND_K => a &= i.k,
            JA => pc += i.k as usize,
            JEQ_K => pc += jump(a == i.k),
            JGT_K => pc += jump(a > i.k),
            JGE_K => pc += jump(a >= i.k),
            RET_K => return (i.k, steps),
            other => panic!("opcode {other:#x} not emitted by the compiler"),
        }
    }
    panic!("the filter ran off its end")
}

#[cfg(test)]
mod tests;
