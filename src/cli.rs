//! The command line: arguments become validated options ([`BuildOptions`], [`PkgOptions`])
//! before any work starts, then the library runs them. Here too: logging set-up, the
//! success line, error printing, and exit statuses (0 success, 1 failure, 2 usage, 130 / 143
//! for Ctrl-C / SIGTERM, see `imagesmith::signals`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, Parser, Subcommand};

use imagesmith::build::{self, BuildOptions, DEFAULT_MTIME};
use imagesmith::cache::{self, Cache, CacheOptions};
use imagesmith::output::{self, Codec, Format};
use imagesmith::pkg::{self, PkgOptions};
use imagesmith::progress::{self, Progress};
use imagesmith::registry::store::Store;
use imagesmith::registry::{self, RegistryOptions, RegistrySource};
use imagesmith::source::{ImageSource, ResolveOptions, normalize_platform};
use imagesmith::spec::reference::Reference;
use imagesmith::spec::{self, Input};
use imagesmith::{engine, signals};

#[derive(Debug, Parser)]
#[command(
    name = "imagesmith",
    version,
    about = "Assemble bootable Linux system images from container images (LinuxKit YAML)"
)]
struct Cli {
    /// Print only errors (no progress, no success line).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More logging (repeat for more). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from one or more YAML files.
    Build(BuildArgs),
    /// Check YAML files without building (no engine needed).
    Validate(ValidateArgs),
    /// Packages: directories with a Dockerfile (see pkg/README.md).
    Pkg {
        #[command(subcommand)]
        command: PkgCommand,
    },
    /// The image cache: list, remove, prune.
    Cache(CacheArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff) on standard output.
    Man,
}

#[derive(Debug, Subcommand)]
enum PkgCommand {
    /// Build package directories into local images (`imagesmith/<dir name>:dev` by default)
    /// through the engine; prints `<tag> <image id>` for each.
    Build(PkgBuildArgs),
}

#[derive(Debug, Args)]
struct PkgBuildArgs {
    /// Package directories (each with a Dockerfile and optionally a `prepare` script).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Tag of the image (one directory only); default `imagesmith/<dir name>:dev`.
    #[arg(short, long)]
    tag: Option<String>,
}

#[derive(Debug, Args)]
struct CacheArgs {
    /// The cache directory (default: $XDG_CACHE_HOME/imagesmith, else ~/.cache/imagesmith).
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// List the cached images: names, ID, size on disk, last use (most recent first).
    Ls,
    /// Remove the cached images a reference names (any name they were used under), or of
    /// an image ID or a unique start of one.
    Rm {
        #[arg(required = true, value_name = "REF|ID")]
        images: Vec<String>,
    },
    /// Load a `docker save` archive, an OCI archive or an OCI image layout directory into
    /// the cache, for `build --source registry` without network access.
    Import {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Remove least recently used entries until the cache takes at most the default limit
    /// (10 GiB), or SIZE, or nothing with --all.
    Prune {
        /// Empty the cache.
        #[arg(long, conflicts_with = "keep_size")]
        all: bool,
        /// Keep at most this much (e.g. 500M, 10G; K, M, G, T are powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = cache::parse_size)]
        keep_size: Option<u64>,
    },
}

fn format_parser() -> impl TypedValueParser<Value = Format> {
    PossibleValuesParser::new(Format::ALL.iter().map(|f| f.name())).try_map(|s| s.parse::<Format>())
}

fn codec_parser() -> impl TypedValueParser<Value = Codec> {
    PossibleValuesParser::new(Codec::ALL.iter().map(|c| c.name())).try_map(|s| s.parse::<Codec>())
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// YAML files, merged in order; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<String>,
    /// Output file, or `-` for standard output (single-file formats only).
    #[arg(short, long)]
    output: Option<String>,
    /// Output format (default: tar; tar.gz for an output ending in .tar.gz/.tgz, tar.zst for
    /// .tar.zst/.tzst).
    /// Repeat it, or separate formats with commas, to write several from one pass over the
    /// images (each under its default name; not with -o).
    #[arg(short, long, value_parser = format_parser(), value_delimiter = ',', action = clap::ArgAction::Append)]
    format: Vec<Format>,
    /// Compression of the initrd (kernel+initrd, tar-kernel-initrd).
    #[arg(long, value_parser = codec_parser(), default_value = "gzip")]
    initrd_compression: Codec,
    /// Output name without -o (default: the last YAML file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Output directory without -o, and for formats with several files.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Pull every image even when the engine has it.
    #[arg(long)]
    pull: bool,
    /// Platform the images must be (os/arch[/variant]); default: no check.
    #[arg(long)]
    platform: Option<String>,
    /// Images exported at once: the next N-1 are exported and rewritten ahead of the one
    /// being written, into spool files moved into the output as they grow; the output is
    /// the same whatever N is. Images are inspected and pulled max(N, 4) at once. Default
    /// 2: on 2 cores, 3 and 4 were no faster in the benchmark and hold more memory (see
    /// README, Performance).
    #[arg(short, long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// The image cache directory (default: $XDG_CACHE_HOME/imagesmith, else
    /// ~/.cache/imagesmith). Images whose ID is cached are not exported again.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Neither read nor fill the image cache.
    #[arg(long, conflicts_with_all = ["cache_dir", "cache_size"])]
    no_cache: bool,
    /// The cache's size limit: after the build, least recently used entries are removed
    /// until the cache takes at most SIZE (the build's own are spared). K, M, G, T are
    /// powers of 1024 (e.g. 500M, 20G).
    #[arg(long, value_name = "SIZE", default_value = "10G", value_parser = cache::parse_size)]
    cache_size: u64,
    /// Disk size of raw-efi and qcow2-efi (e.g. 300M, 2G; a bare number is MiB). Default:
    /// what the content needs plus a margin.
    #[arg(long, value_parser = output::disk::parse_size)]
    size: Option<u64>,
    /// The image holding the EFI loader of raw-efi, qcow2-efi and iso-efi (its EFI/ and
    /// loader/ files); `imagesmith pkg build pkg/efi` builds the default.
    #[arg(long, default_value = output::disk::DEFAULT_LOADER)]
    efi_loader: String,
    /// Where images come from: the Docker engine, or registries (and `cache import`ed
    /// archives) with no engine at all.
    #[arg(long, value_parser = ["engine", "registry"], default_value = "engine")]
    source: String,
    /// With --source registry: a registry spoken to over plain HTTP (loopback registries
    /// always may be). Repeat for several.
    #[arg(long, value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
    /// Print the merged YAML with normalised image references and exit.
    #[arg(long, conflicts_with_all = ["output", "format", "name", "dir", "pull", "platform"])]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// YAML files, merged in order; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<String>,
}

/// The least number of images inspected or pulled at once.
const RESOLVE_AT_ONCE: usize = 4;

fn inputs(files: &[String]) -> Vec<Input> {
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

/// The time of generated entries: `SOURCE_DATE_EPOCH` when set, else [`DEFAULT_MTIME`].
fn fixed_mtime() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .map_err(|_| anyhow!("SOURCE_DATE_EPOCH must be a number of seconds, not `{v}`")),
        _ => Ok(DEFAULT_MTIME),
    }
}

/// `build`'s arguments as options; nothing is read or contacted yet.
fn build_options(args: &BuildArgs) -> anyhow::Result<BuildOptions> {
    let last_input = args.files.last().filter(|f| *f != "-").map(Path::new);
    let targets = output::with_initrd_compression(
        output::targets(
            &args.format,
            args.output.as_deref(),
            args.name.as_deref(),
            args.dir.as_deref(),
            last_input,
        )?,
        args.initrd_compression,
    )?;
    let jobs = usize::from(args.jobs).max(1);
    Ok(BuildOptions {
        inputs: inputs(&args.files),
        targets,
        create_dir: args.dir.clone(),
        mtime: fixed_mtime()?,
        ahead: jobs - 1,
        // Inspects and pulls wait on the engine and the network, not on this machine's
        // disk: more of them at once than exports.
        resolve_at_once: jobs.max(RESOLVE_AT_ONCE),
        resolve: ResolveOptions {
            always_pull: args.pull,
            platform: args
                .platform
                .as_deref()
                .map(normalize_platform)
                .transpose()?,
        },
        efi_loader: Reference::parse(&args.efi_loader)
            .map_err(|e| anyhow!("--efi-loader `{}`: {e}", args.efi_loader))?,
        disk_size: args.size,
        cache: if args.no_cache {
            None
        } else {
            match cache_dir(args.cache_dir.as_deref()) {
                Ok(dir) => Some(CacheOptions {
                    dir,
                    limit: args.cache_size,
                }),
                Err(e) => {
                    log::warn!("{e}; building without a cache");
                    None
                }
            }
        },
    })
}

/// `--cache-dir`, else the default cache directory.
fn cache_dir(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = arg {
        return Ok(d.to_path_buf());
    }
    let var = |k| std::env::var(k).ok();
    cache::default_dir(var("XDG_CACHE_HOME").as_deref(), var("HOME").as_deref()).ok_or_else(|| {
        anyhow!("no cache directory: neither XDG_CACHE_HOME nor HOME is set (use --cache-dir)")
    })
}

fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // Our own crate at the chosen level; dependencies one step quieter unless -vv.
    let default = match (quiet, verbose) {
        (true, _) => "error".to_string(),
        (false, v) if v >= 2 => level.to_string(),
        _ => format!("warn,imagesmith={level}"),
    };
    let env = env_logger::Env::default().default_filter_or(default);
    // Through the progress module, so that log lines and progress bars share stderr; one
    // prefix style for every message: `error: `, `warning: `, plain for the rest.
    let _ = env_logger::Builder::from_env(env)
        .format(|f, record| match record.level() {
            log::Level::Error => writeln!(f, "error: {}", record.args()),
            log::Level::Warn => writeln!(f, "warning: {}", record.args()),
            _ => writeln!(f, "{}", record.args()),
        })
        .target(env_logger::Target::Pipe(Box::new(progress::LogWriter)))
        .try_init();
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    let res = match cli.command {
        Command::Build(args) if args.dry_run => dry_run(&args),
        Command::Build(args) => build(&args, cli.quiet),
        Command::Validate(args) => validate(&args),
        Command::Pkg {
            command: PkgCommand::Build(args),
        } => pkg_build(&args),
        Command::Cache(args) => cache_command(&args),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "imagesmith", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(anyhow::Error::from),
    };
    if let Some(code) = signals::wait_if_interrupted() {
        // Ctrl-C / SIGTERM: the handler is cleaning up and ends the process.
        return ExitCode::from(code);
    }
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Prints a failure on standard error: each problem of an invalid spec on its own line,
/// then one `error:` line.
fn report(e: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    if is_broken_pipe(e) {
        // The reader went away: what it got is incomplete (exit 1).
        let _ = writeln!(
            err,
            "error: the output's reader closed standard output before the end; what it read is incomplete"
        );
        return;
    }
    if let Some(d) = e.downcast_ref::<spec::Diagnostics>() {
        for problem in &d.0 {
            let _ = writeln!(err, "{problem}");
        }
        let n = d.0.len();
        let _ = writeln!(
            err,
            "error: {n} problem{} found",
            if n == 1 { "" } else { "s" }
        );
        return;
    }
    let _ = writeln!(err, "error: {e:#}");
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `imagesmith build`: the output, then a success line on standard error (unless `-q`).
fn build(args: &BuildArgs, quiet: bool) -> anyhow::Result<()> {
    let opts = build_options(args)?;
    let progress = Progress::auto(quiet);
    // The registry source keeps its blobs in the cache directory; with --no-cache, in a
    // temporary one that goes with the build.
    let scratch;
    let registry_dir = match (&opts.cache, args.source.as_str()) {
        (_, "engine") => None,
        (Some(c), _) => Some(c.dir.clone()),
        (None, _) => {
            scratch = tempfile::Builder::new()
                .prefix("imagesmith-registry.")
                .tempdir()
                .context("creating a temporary blob directory")?;
            Some(scratch.path().to_path_buf())
        }
    };
    let insecure = args.insecure_registry.clone();
    let platform = opts.resolve.platform.clone();
    let connect = move |rt: &tokio::runtime::Runtime| -> anyhow::Result<Arc<dyn ImageSource>> {
        match &registry_dir {
            None => Ok(engine::docker_source(rt, progress.clone())?),
            Some(dir) => Ok(Arc::new(RegistrySource::new(RegistryOptions {
                cache_dir: dir.clone(),
                insecure: insecure.clone(),
                platform: platform.clone(),
            })?)),
        }
    };
    let report = build::run(&opts, &connect)?;
    if !quiet {
        let what: Vec<String> = report
            .written
            .iter()
            .map(|(path, size)| match path {
                Some(p) => format!("{} ({})", p.display(), progress::human(*size)),
                None => "standard output".to_string(),
            })
            .collect();
        let formats: Vec<&str> = opts.targets.iter().map(|t| t.format.name()).collect();
        log::info!(
            "built {} as {} in {:.1} s: {}",
            args.files.join(", "),
            formats.join(" and "),
            report.elapsed.as_secs_f64(),
            what.join(", ")
        );
    }
    Ok(())
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

/// Loads the files, logging warnings.
fn load(files: &[String]) -> anyhow::Result<spec::Loaded> {
    let loaded = spec::load(&inputs(files))?;
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    Ok(loaded)
}

/// `imagesmith cache ls|rm|prune`: results on standard output.
fn cache_command(args: &CacheArgs) -> anyhow::Result<()> {
    let dir = cache_dir(args.cache_dir.as_deref())?;
    let c = Cache::at(&dir);
    let mut out = std::io::stdout().lock();
    match &args.command {
        CacheCommand::Ls => {
            let items = c.list();
            let mut rows = vec![[
                "NAME".to_string(),
                "ID".to_string(),
                "SIZE".to_string(),
                "LAST USE".to_string(),
            ]];
            let (mut blobs, mut blob_bytes, mut total) = (0usize, 0u64, 0u64);
            for i in &items {
                total += i.disk;
                let Some(m) = &i.meta else {
                    blobs += 1;
                    blob_bytes += i.disk;
                    continue;
                };
                let id = m.id.strip_prefix("sha256:").unwrap_or(&m.id);
                rows.push([
                    if m.names.is_empty() {
                        "<none>".to_string()
                    } else {
                        m.names.join(",")
                    },
                    engine::short(id).to_string(),
                    progress::human(i.disk),
                    cache::format_time(i.last_used),
                ]);
            }
            let widths: Vec<usize> = (0..4)
                .map(|k| rows.iter().map(|r| r[k].chars().count()).max().unwrap_or(0))
                .collect();
            for r in &rows {
                writeln!(
                    out,
                    "{:w0$}  {:w1$}  {:>w2$}  {}",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2]
                )?;
            }
            let images = rows.len() - 1;
            let mut summary = format!(
                "{images} image{} in {}",
                if images == 1 { "" } else { "s" },
                dir.display()
            );
            if blobs > 0 {
                summary.push_str(&format!(
                    ", {blobs} registry blob{} ({})",
                    if blobs == 1 { "" } else { "s" },
                    progress::human(blob_bytes)
                ));
            }
            writeln!(out, "{summary}; {} in all", progress::human(total))?;
        }
        CacheCommand::Rm { images } => {
            let mut failed = Vec::new();
            for what in images {
                match c.find(what) {
                    Ok(items) => {
                        for i in items {
                            Cache::remove_entry(&i.path)?;
                            let (id, names) = i
                                .meta
                                .map(|m| (m.id, m.names.join(",")))
                                .unwrap_or_default();
                            writeln!(out, "removed {id} ({names})")?;
                        }
                    }
                    Err(e) => failed.push(e),
                }
            }
            if !failed.is_empty() {
                return Err(anyhow!("{}", failed.join("; ")));
            }
        }
        CacheCommand::Import { path } => {
            let report = registry::import(&Store::new(&dir), path)?;
            for (reference, digest) in &report.references {
                writeln!(out, "{reference} {digest}")?;
            }
            for digest in &report.unnamed {
                writeln!(out, "(no name) {digest}")?;
            }
            log::info!(
                "imported {}: {} reference{}, {} new blob{}",
                path.display(),
                report.references.len(),
                if report.references.len() == 1 {
                    ""
                } else {
                    "s"
                },
                report.blobs_written,
                if report.blobs_written == 1 { "" } else { "s" }
            );
        }
        CacheCommand::Prune { all, keep_size } => {
            c.remove_stale_temporaries();
            let removed = if *all {
                c.clear()
            } else {
                c.evict(keep_size.unwrap_or(cache::DEFAULT_LIMIT), &[])
            };
            let freed: u64 = removed.iter().map(|i| i.disk).sum();
            writeln!(
                out,
                "removed {} entr{} ({}); the cache takes {}",
                removed.len(),
                if removed.len() == 1 { "y" } else { "ies" },
                progress::human(freed),
                progress::human(c.total())
            )?;
        }
    }
    Ok(())
}

/// `imagesmith pkg build`: `<tag> <image id>` per package on standard output.
fn pkg_build(args: &PkgBuildArgs) -> anyhow::Result<()> {
    let opts = PkgOptions {
        dirs: args.dirs.clone(),
        tag: args.tag.clone(),
        mtime: fixed_mtime()?,
    };
    let mut out = std::io::stdout().lock();
    for (tag, id) in pkg::run(&opts)? {
        writeln!(out, "{tag} {id}")?;
    }
    Ok(())
}
