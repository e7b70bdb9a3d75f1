use std::process::ExitCode;

fn main() -> ExitCode {
    commitd::cli::main()
}
