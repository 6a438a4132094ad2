//! `warden-server`: the controller and its admin commands on their own (the
//! `warden` binary offers the same as `warden serve` and `warden admin`).

fn main() -> std::process::ExitCode {
    warden_server::cli::main()
}
