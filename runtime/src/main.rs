//! The `spate` command.

fn main() -> std::process::ExitCode {
    spate::cli::main()
}
