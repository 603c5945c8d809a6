//! The choice of compressor for the compressed formats (SPEC §6, §10): gzip
//! ([`crate::output::gzip`]) or zstd ([`crate::output::zstd`]), behind one writer, so a format
//! (the compressed tars, the initrd) is written once whatever its codec.

use std::io::{self, Write};

use clap::ValueEnum;

use crate::output::gzip::{ParGzEncoder, gzip};
use crate::output::zstd::{ZstdEncoder, zstd};

/// A codec (`--initrd-compression`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Codec {
    #[default]
    Gzip,
    Zstd,
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
