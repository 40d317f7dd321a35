//! The syscall layer: the only place with `unsafe`. Each wrapper turns a raw call into a
//! `std::io::Result`, and each `unsafe` block says why it is sound.

pub mod fs;
#[cfg(feature = "krun")]
pub mod krun;
pub mod net;
pub mod ns;
pub mod proc;
pub mod res;
pub mod sec;
pub mod sig;
pub mod tty;
