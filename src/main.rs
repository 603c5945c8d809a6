//! The `imagesmith` binary: everything lives in the library; see `imagesmith::cli`.

fn main() -> std::process::ExitCode {
    imagesmith::cli::main()
}
