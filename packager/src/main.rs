use clap::Parser;

fn main() {
    // `oci2bin cache rm|prune` starts itself this way to remove trees of subordinate ids.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == oci2bin::cache::REMOVE_MAPPED)
    {
        std::process::exit(oci2bin::cache::remove_mapped_child(&args[2..]));
    }
    let cli = oci2bin::cli::Cli::parse();
    if let Err(e) = oci2bin::cli::run(cli) {
        eprintln!("oci2bin: error: {}", oci2bin::error::one_line(&e));
        std::process::exit(1);
    }
}
