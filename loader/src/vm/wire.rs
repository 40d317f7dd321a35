//! The control port between the host and the guest's init: one framed [`GuestConfig`] from the
//! host at start, then one-message frames both ways.
//!
//! ```text
//! frame      u32 LE length, then that many bytes
//! config     host → guest, first: items `tag u8, len u32 LE, value` (unknown tags skipped)
//! ready      guest → host: 'R' (the init has its config: the guest started)
//! signal     host → guest: 'S', signal number u8 (forwarded to the command)
//! resize     host → guest: 'W', rows u16 LE, columns u16 LE (the caller's terminal, with -t)
//! exit       guest → host: 'X', i32 LE (the command's code, 128+N when a signal killed it)
//! ```

use crate::plan::vm::{GuestConfig, GuestNet};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// No config comes near this; a guest reading garbage stops instead of allocating it.
const MAX_FRAME: u32 = 16 << 20;

mod tag {
    pub const ARG: u8 = 1;
    pub const ENV: u8 = 2;
    pub const WORKDIR: u8 = 3;
    pub const IDS: u8 = 4;
    pub const GROUP: u8 = 5;
    pub const HOSTNAME: u8 = 6;
    pub const TTY: u8 = 7;
    pub const READ_ONLY: u8 = 8;
    pub const NET: u8 = 9;
}

pub fn encode(c: &GuestConfig) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |t: u8, v: &[u8]| {
        out.push(t);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    };
    for a in &c.argv {
        put(tag::ARG, a.as_bytes());
    }
    for e in &c.env {
        put(tag::ENV, e.as_bytes());
    }
    put(tag::WORKDIR, c.workdir.as_os_str().as_bytes());
    put(
        tag::IDS,
        &[c.uid.to_le_bytes(), c.gid.to_le_bytes()].concat(),
    );
    for g in &c.groups {
        put(tag::GROUP, &g.to_le_bytes());
    }
    put(tag::HOSTNAME, c.hostname.as_bytes());
    if c.tty {
        put(
            tag::TTY,
            &[c.winsize.0.to_le_bytes(), c.winsize.1.to_le_bytes()].concat(),
        );
    }
    if c.read_only {
        put(tag::READ_ONLY, &[]);
    }
    if let Some(n) = &c.net {
        let v = [
            &n.addr[..],
            &[n.prefix],
            &n.gateway,
            &n.dns,
            &n.mtu.to_le_bytes(),
        ]
        .concat();
        put(tag::NET, &v);
    }
    out
}

fn bad(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

pub fn decode(b: &[u8]) -> io::Result<GuestConfig> {
    let mut c = GuestConfig::default();
    let mut at = 0;
    let u32_at = |v: &[u8], i: usize| u32::from_le_bytes(v[i..i + 4].try_into().unwrap());
    while at < b.len() {
        if b.len() - at < 5 {
            return Err(bad("truncated config item"));
        }
        let t = b[at];
        let len = u32_at(b, at + 1) as usize;
        at += 5;
        let v = b
            .get(at..at + len)
            .ok_or_else(|| bad("config item past the end"))?;
        at += len;
        match (t, v.len()) {
            (tag::ARG, _) => c.argv.push(OsString::from_vec(v.to_vec())),
            (tag::ENV, _) => c.env.push(OsString::from_vec(v.to_vec())),
            (tag::WORKDIR, _) => c.workdir = PathBuf::from(OsString::from_vec(v.to_vec())),
            (tag::IDS, 8) => (c.uid, c.gid) = (u32_at(v, 0), u32_at(v, 4)),
            (tag::GROUP, 4) => c.groups.push(u32_at(v, 0)),
            (tag::HOSTNAME, _) => {
                c.hostname = String::from_utf8(v.to_vec()).map_err(|_| bad("hostname"))?
            }
            (tag::TTY, 4) => {
                c.tty = true;
                c.winsize = (
                    u16::from_le_bytes([v[0], v[1]]),
                    u16::from_le_bytes([v[2], v[3]]),
                );
            }
            (tag::READ_ONLY, 0) => c.read_only = true,
            (tag::NET, 17) => {
                let four = |i: usize| -> [u8; 4] { v[i..i + 4].try_into().unwrap() };
                c.net = Some(GuestNet {
                    addr: four(0),
                    prefix: v[4],
                    gateway: four(5),
                    dns: four(9),
                    mtu: u32_at(v, 13),
                })
            }
            (tag::IDS | tag::GROUP | tag::TTY | tag::READ_ONLY | tag::NET, _) => {
                return Err(bad("config item of the wrong length"))
            }
            _ => {}
        }
    }
    if c.argv.is_empty() {
        return Err(bad("config without a command"));
    }
    Ok(c)
}

pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(body);
    w.write_all(&b)
}

pub fn read_frame(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    let n = u32::from_le_bytes(n);
    if n > MAX_FRAME {
        return Err(bad("control frame too long"));
    }
    let mut b = vec![0u8; n as usize];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// A message after the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Ready,
    Signal(u8),
    Resize(u16, u16),
    Exit(i32),
}

impl Message {
    pub fn encode(self) -> Vec<u8> {
        match self {
            Message::Ready => vec![b'R'],
            Message::Signal(n) => vec![b'S', n],
            Message::Resize(r, c) => [&[b'W'][..], &r.to_le_bytes(), &c.to_le_bytes()].concat(),
            Message::Exit(code) => [&[b'X'][..], &code.to_le_bytes()].concat(),
        }
    }

    pub fn decode(b: &[u8]) -> Option<Message> {
        match b {
            [b'R'] => Some(Message::Ready),
            [b'S', n] => Some(Message::Signal(*n)),
            [b'W', r0, r1, c0, c1] => Some(Message::Resize(
                u16::from_le_bytes([*r0, *r1]),
                u16::from_le_bytes([*c0, *c1]),
            )),
            [b'X', c @ ..] if c.len() == 4 => {
                Some(Message::Exit(i32::from_le_bytes(c.try_into().unwrap())))
            }
            _ => None,
        }
    }
}

/// Splits complete frames off the front of `buf` (bytes read from a stream so far).
pub fn take_frames(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 4 {
            return out;
        }
        let n = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
        if buf.len() < 4 + n {
            return out;
        }
        out.push(buf[4..4 + n].to_vec());
        buf.drain(..4 + n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GuestConfig {
        GuestConfig {
            argv: vec![
                "sh".into(),
                "-c".into(),
                OsString::from_vec(vec![0xff, b'x']),
            ],
            env: vec!["PATH=/bin".into(), "A=".into()],
            workdir: "/srv".into(),
            uid: 1000,
            gid: 100,
            groups: vec![10, 20],
            hostname: "box".into(),
            tty: true,
            winsize: (40, 120),
            read_only: true,
            net: Some(crate::plan::vm::GUEST_NET),
        }
    }

    #[test]
    fn config_round_trips_with_bytes_that_are_not_utf8() {
        assert_eq!(decode(&encode(&sample())).unwrap(), sample());
        let plain = GuestConfig {
            tty: false,
            winsize: (0, 0),
            read_only: false,
            net: None,
            ..sample()
        };
        assert_eq!(decode(&encode(&plain)).unwrap(), plain);
    }

    #[test]
    fn truncated_or_odd_configs_are_refused_not_guessed() {
        let b = encode(&sample());
        for cut in 1..b.len() {
            if let Ok(c) = decode(&b[..cut]) {
                assert_ne!(c, sample());
            }
        }
        assert!(decode(&[tag::IDS, 3, 0, 0, 0, 1, 2, 3, tag::ARG, 0, 0, 0, 0]).is_err());
        assert!(decode(&[]).is_err(), "a config must name a command");
    }

    #[test]
    fn frames_split_from_a_stream_in_any_chunks() {
        let mut stream = Vec::new();
        write_frame(&mut stream, &Message::Signal(2).encode()).unwrap();
        write_frame(&mut stream, &Message::Resize(40, 132).encode()).unwrap();
        write_frame(&mut stream, &Message::Exit(-1).encode()).unwrap();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in stream {
            buf.push(b);
            got.extend(take_frames(&mut buf));
        }
        let msgs: Vec<_> = got.iter().map(|f| Message::decode(f).unwrap()).collect();
        assert_eq!(
            msgs,
            [
                Message::Signal(2),
                Message::Resize(40, 132),
                Message::Exit(-1)
            ]
        );
        assert!(buf.is_empty());
        assert_eq!(Message::decode(b"Q"), None);
        let mut huge = &(MAX_FRAME + 1).to_le_bytes()[..];
        assert!(read_frame(&mut huge).is_err());
    }
}
