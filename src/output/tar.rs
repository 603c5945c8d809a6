//! The tar-based formats (SPEC §6): `tar` (the entries as they come), `tar.gz` and `tar.zst`
//! (the same stream compressed: [`crate::output::gzip`], [`crate::output::zstd`]) and `docker` (the tar plus a root `Dockerfile`, last, as LinuxKit
//! appends it, so `docker build` can turn the output into an image).

use std::io::{self, Read};

use crate::archive::{Entry, Kind, Sink, Spool, TarSink, take_spool};
use crate::output::compress::{Codec, Compressor};
use crate::output::{FileOut, Output};

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

    /// The spool is this sink's own encoding: its bytes go in whole.
    fn append_tar(&mut self, spool: &mut dyn Spool) -> io::Result<()> {
        take_spool(self.sink.get_mut(), spool)
    }
}

impl Output for TarOutput {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.sink.finish()?.commit()
    }
}

/// `tar.gz` and `tar.zst`: the tar stream compressed.
pub struct CompressedTarOutput {
    sink: TarSink<Compressor<FileOut>>,
}

impl CompressedTarOutput {
    pub fn new(out: FileOut, codec: Codec) -> io::Result<CompressedTarOutput> {
        Ok(CompressedTarOutput {
            sink: TarSink::new(Compressor::new(codec, out)?),
        })
    }
}

impl Sink for CompressedTarOutput {
    fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        self.sink.append(entry, data)
    }

    /// The spool is this sink's own encoding: its bytes go in whole.
    fn append_tar(&mut self, spool: &mut dyn Spool) -> io::Result<()> {
        take_spool(self.sink.get_mut(), spool)
    }
}

impl Output for CompressedTarOutput {
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

    /// The spool is this sink's own encoding: its bytes go in whole.
    fn append_tar(&mut self, spool: &mut dyn Spool) -> io::Result<()> {
        take_spool(self.sink.get_mut(), spool)
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::archive::append_bytes;
    use crate::output::gzip::tests::gunzip;
    use crate::output::zstd::tests::unzstd;
    use crate::output::{Destination, Format, Target, open};

    fn write(format: Format, path: &std::path::Path) {
        let t = Target {
            format,
            destination: Destination::File(path.to_path_buf()),
            initrd: crate::output::Codec::Gzip,
        };
        let mut out = open(&t, 77).unwrap();
        append_bytes(out.as_mut(), &Entry::dir("etc", 0o755, 5), b"").unwrap();
        append_bytes(out.as_mut(), &Entry::file("etc/motd", 0o644, 5, 3), b"hi\n").unwrap();
        out.finish().unwrap();
    }

    #[test]
    fn tar_gz_is_the_tar_compressed() {
        let d = tempfile::tempdir().unwrap();
        write(Format::Tar, &d.path().join("a.tar"));
        write(Format::TarGz, &d.path().join("a.tar.gz"));
        let gz = std::fs::read(d.path().join("a.tar.gz")).unwrap();
        assert_eq!(gunzip(&gz), std::fs::read(d.path().join("a.tar")).unwrap());
        // reproducible header: no time, no name
        assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
        assert_eq!(gz[3] & 0x08, 0);
    }

    #[test]
    fn tar_zst_is_the_tar_compressed() {
        let d = tempfile::tempdir().unwrap();
        write(Format::Tar, &d.path().join("a.tar"));
        write(Format::TarZst, &d.path().join("a.tar.zst"));
        let z = std::fs::read(d.path().join("a.tar.zst")).unwrap();
        assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(unzstd(&z), std::fs::read(d.path().join("a.tar")).unwrap());
    }

    #[test]
    fn docker_appends_linuxkits_dockerfile_last() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.docker.tar");
        write(Format::Docker, &p);
        let items = crate::archive::tests::read_all(&std::fs::read(&p).unwrap());
        let (last, data) = items.last().unwrap();
        assert_eq!(last.display_path(), "Dockerfile");
        assert_eq!((last.mode, last.mtime), (0o644, 77));
        assert_eq!(
            String::from_utf8_lossy(data),
            "\nFROM scratch\n\nCOPY . ./\n\nENTRYPOINT [\"/bin/rc.init\"]\n"
        );
        assert_eq!(items.len(), 3);
    }
}
