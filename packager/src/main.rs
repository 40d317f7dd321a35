use clap::Parser;

fn main() {
    let cli = oci2bin::cli::Cli::parse();
    if let Err(e) = oci2bin::cli::run(cli) {
        eprintln!("oci2bin: error: {}", oci2bin::error::one_line(&e));
        std::process::exit(1);
    }
}
