//! The tar-based formats (SPEC §6): `tar` (the entries as they come), `tar.gz` (the same
//! stream gzip-compressed) and `docker` (the tar plus a root `Dockerfile`, last, as LinuxKit
//! appends it, so `docker build` can turn the output into an image).

use std::io::{self, Read, Write};

use crate::archive::{Entry, Kind, Sink, TarSink};
use crate::output::{FileOut, Output};

/// gzip as every format writes it: zlib-rs, level 6, a header without name or time (the
/// same input always gives the same bytes).
pub fn gzip<W: Write>(w: W) -> flate2::write::GzEncoder<W> {
    flate2::GzBuilder::new()
        .mtime(0)
        .write(w, flate2::Compression::new(6))
}

/// `tar`: the entries as a tar stream.
pub struct TarOutput {
    sink: TarSink<FileOut>,
}

impl TarOutput {
    pub fn new(out: FileOut) -> TarOutput {
        TarOutput {
            sink: TarSink::new(out),
        }
    }
}

impl Sink for TarOutput {
    fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        self.sink.append(entry, data)
    }
}

impl Output for TarOutput {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.sink.finish()?.commit()
    }
}

/// `tar.gz`: the tar stream gzip-compressed.
pub struct TarGzOutput {
    sink: TarSink<flate2::write::GzEncoder<FileOut>>,
}

impl TarGzOutput {
    pub fn new(out: FileOut) -> TarGzOutput {
        TarGzOutput {
            sink: TarSink::new(gzip(out)),
        }
    }
}

impl Sink for TarGzOutput {
    fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        self.sink.append(entry, data)
    }
}

impl Output for TarGzOutput {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.sink.finish()?.finish()?.commit()
    }
}

/// The root `Dockerfile` of the `docker` format, byte for byte as LinuxKit writes it
/// (`src/cmd/linuxkit/moby/build/build.go`, `dockerfile`), mode 0644, the fixed time.
pub const DOCKERFILE: &str = "\nFROM scratch\n\nCOPY . ./\n\nENTRYPOINT [\"/bin/rc.init\"]\n";

/// `docker`: the tar with a root `Dockerfile` at the end, ready for `docker build`.
pub struct DockerOutput {
    sink: TarSink<FileOut>,
    mtime: u64,
}

impl DockerOutput {
    pub fn new(out: FileOut, mtime: u64) -> DockerOutput {
        DockerOutput {
            sink: TarSink::new(out),
            mtime,
        }
    }
}

impl Sink for DockerOutput {
    fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        self.sink.append(entry, data)
    }
}

impl Output for DockerOutput {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        let e = Entry::new(
            "Dockerfile",
            Kind::File,
            0o644,
            self.mtime,
            DOCKERFILE.len() as u64,
        );
        crate::archive::append_bytes(&mut self.sink, &e, DOCKERFILE.as_bytes())?;
        self.sink.finish()?.commit()
    }
}
