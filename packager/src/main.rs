use clap::Parser;

fn main() {
    let cli = oci2bin::cli::Cli::parse();
    if let Err(e) = oci2bin::cli::run(cli) {
        // One line: the context chain joined by ": ".
        eprintln!("oci2bin: error: {e:#}");
        std::process::exit(1);
    }
}
