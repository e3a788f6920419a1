//! The `airback` binary: everything happens in [`airback::cli`].

fn main() -> std::process::ExitCode {
    airback::cli::main()
}
