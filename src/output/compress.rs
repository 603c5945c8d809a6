//! The choice of compressor for the compressed formats (SPEC §6, §10): gzip
//! ([`crate::output::gzip`]) or zstd ([`crate::output::zstd`]), behind one writer, so a format
//! (the compressed tars, the initrd) is written once whatever its codec.

use std::io::{self, Write};

use crate::output::gzip::{ParGzEncoder, gzip};
use crate::output::zstd::{ZstdEncoder, zstd};

/// A codec (`--initrd-compression`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Codec {
    #[default]
    Gzip,
    Zstd,
}

impl Codec {
    pub const ALL: &[Codec] = &[Codec::Gzip, Codec::Zstd];

    /// The codec's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Codec, String> {
        Codec::ALL
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown compression `{s}` (gzip or zstd)"))
    }
}

/// A compressed stream being written.
pub enum Compressor<W: Write> {
    Gzip(ParGzEncoder<W>),
    Zstd(ZstdEncoder<W>),
}

impl<W: Write> Compressor<W> {
    pub fn new(codec: Codec, w: W) -> io::Result<Compressor<W>> {
        Ok(match codec {
            Codec::Gzip => Compressor::Gzip(gzip(w)),
            Codec::Zstd => Compressor::Zstd(zstd(w)?),
        })
    }

    /// Ends the compressed stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

/// Spooled tar bytes go through the compressor like any others.
impl<W: Write> crate::archive::TakeFile for Compressor<W> {}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}
