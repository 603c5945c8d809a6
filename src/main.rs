//! The `imagesmith` binary: the command line ([`cli`]) over the library, which never sees
//! the argument parser.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
