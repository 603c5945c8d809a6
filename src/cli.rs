//! The command line (SPEC §1): argument parsing, logging set-up, dispatch to the library,
//! error printing and exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::spec::{self, Input};

#[derive(Debug, Parser)]
#[command(
    name = "imagesmith",
    version,
    about = "Assemble bootable Linux system images from container images (LinuxKit YAML)"
)]
pub struct Cli {
    /// Log only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More logging (repeat for more). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from one or more YAML files.
    Build(BuildArgs),
    /// Check YAML files without building (no engine needed).
    Validate(ValidateArgs),
    /// Packages: directories with a Dockerfile (see pkg/README.md).
    Pkg {
        #[command(subcommand)]
        command: PkgCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkgCommand {
    /// Build package directories into local images (`imagesmith/<dir name>:dev` by default)
    /// through the engine; prints `<tag> <image id>` for each.
    Build(PkgBuildArgs),
}

#[derive(Debug, Args)]
pub struct PkgBuildArgs {
    /// Package directories (each with a Dockerfile and optionally a `prepare` script).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Tag of the image (one directory only); default `imagesmith/<dir name>:dev`.
    #[arg(short, long)]
    pub tag: Option<String>,
}

pub use crate::output::Format;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// YAML files, merged in order; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Output file, or `-` for standard output (single-file formats only).
    #[arg(short, long)]
    pub output: Option<String>,
    /// Output format (default: tar, or tar.gz for an output ending in .tar.gz/.tgz).
    #[arg(short, long, value_enum)]
    pub format: Option<Format>,
    /// Output name without -o (default: the last YAML file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Output directory without -o, and for formats with several files.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Pull every image even when the engine has it.
    #[arg(long)]
    pub pull: bool,
    /// Platform the images must be (os/arch[/variant]); default: the engine's own.
    #[arg(long)]
    pub platform: Option<String>,
    /// Exports at once: N-1 later exports run ahead of the writer, spooled to temporary
    /// files. Images are inspected and pulled max(N, 4) at once. Default 1: the engine's
    /// export is the bottleneck on small machines, and running ahead only adds spool I/O
    /// (see README, Performance).
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Print the merged YAML with normalised image references and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Disk size of raw-efi and qcow2-efi (e.g. 300M, 2G; a bare number is MiB). Default:
    /// what the content needs plus a margin.
    #[arg(long, value_parser = crate::output::disk::parse_size)]
    pub size: Option<u64>,
    /// The image holding the EFI loader of raw-efi, qcow2-efi and iso-efi (its EFI/ and
    /// loader/ files); `imagesmith pkg build pkg/efi` builds the default.
    #[arg(long, default_value = crate::output::disk::DEFAULT_LOADER)]
    pub efi_loader: String,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// YAML files, merged in order; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<String>,
}

/// Exit status for Ctrl-C.
pub const EXIT_SIGINT: u8 = 130;
/// Exit status for SIGTERM.
pub const EXIT_SIGTERM: u8 = 143;

pub fn inputs(files: &[String]) -> Vec<Input> {
    files
        .iter()
        .map(|f| {
            if f == "-" {
                Input::Stdin
            } else {
                Input::Path(PathBuf::from(f))
            }
        })
        .collect()
}

fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // Our own crate at the chosen level; dependencies one step quieter unless -vv.
    let default = if verbose >= 2 {
        level.to_string()
    } else {
        format!("warn,imagesmith={level}")
    };
    let env = env_logger::Env::default().default_filter_or(default);
    // Through the progress module, so that log lines and progress bars share stderr.
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp(None)
        .format_target(false)
        .target(env_logger::Target::Pipe(Box::new(
            crate::progress::LogWriter,
        )))
        .try_init();
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    let res = match cli.command {
        Command::Build(args) if args.dry_run => dry_run(&args),
        Command::Build(args) => crate::build::run(&args, cli.quiet),
        Command::Validate(args) => validate(&args),
        Command::Pkg {
            command: PkgCommand::Build(args),
        } => crate::pkg::run(&args),
    };
    if let Some(code) = crate::signals::wait_if_interrupted() {
        // Ctrl-C / SIGTERM: the handler is removing containers and ends the process.
        return ExitCode::from(code);
    }
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                // The reader went away: the artifact is incomplete (SPEC §1).
                log::error!("standard output was closed before the output was complete");
                return ExitCode::FAILURE;
            }
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `imagesmith validate`: every problem on standard error, one per line
/// (`file:line:column: message`), warnings through the log; fails when there is any problem.
fn validate(args: &ValidateArgs) -> anyhow::Result<()> {
    load(&args.files)?;
    log::info!("{}: valid", args.files.join(", "));
    Ok(())
}

/// `imagesmith build --dry-run`: the merged YAML, image references normalised, on standard
/// output; no engine is asked and nothing is read from image labels.
fn dry_run(args: &BuildArgs) -> anyhow::Result<()> {
    let loaded = load(&args.files)?;
    let mut out = std::io::stdout().lock();
    out.write_all(spec::to_yaml(&loaded.spec).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Loads the files, logging warnings; on failure prints every problem to standard error
/// (`validate`, `build` and `build --dry-run` alike).
pub(crate) fn load(files: &[String]) -> anyhow::Result<spec::Loaded> {
    match spec::load(&inputs(files)) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                log::warn!("{w}");
            }
            Ok(loaded)
        }
        Err(d) => {
            let mut err = std::io::stderr().lock();
            for problem in &d.0 {
                let _ = writeln!(err, "{problem}");
            }
            let n = d.0.len();
            anyhow::bail!("{n} problem{} found", if n == 1 { "" } else { "s" })
        }
    }
}
