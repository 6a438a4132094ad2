//! The `warden` binary: see the `warden_cli` library for everything it does.

fn main() -> std::process::ExitCode {
    warden_cli::main()
}
