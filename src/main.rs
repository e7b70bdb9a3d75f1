use std::process::ExitCode;

fn main() -> ExitCode {
    // Behave like a Unix filter: `commitd usage | head` ends quietly instead of panicking on a
    // closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    commitd::cli::main()
}
