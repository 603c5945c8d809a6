//! Several formats from one pass over the images (`-f A -f B`): every entry goes to every
//! output. An entry's data is read once from the stream: small data is held in memory and
//! handed to each output; larger data goes to the first output through a reader that also
//! spools it to an anonymous temporary file, which the other outputs then read.

use std::io::{self, Read, Seek, Write};

use super::Output;
use crate::archive::{Entry, Sink};

/// Data up to this size is held in memory for the outputs; larger data is spooled.
const IN_MEMORY: u64 = 1 << 20;

/// Every entry to every output, in order.
pub struct Tee {
    outputs: Vec<Box<dyn Output>>,
}

impl Tee {
    pub fn new(outputs: Vec<Box<dyn Output>>) -> Tee {
        Tee { outputs }
    }
}

/// A reader that copies what it reads into `copy`.
struct Copying<'a, W: Write> {
    from: &'a mut dyn Read,
    copy: W,
}

impl<W: Write> Read for Copying<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.from.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Sink for Tee {
    fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let Some((first, rest)) = self.outputs.split_first_mut() else {
            return Ok(());
        };
        if entry.size <= IN_MEMORY {
            let mut bytes = Vec::with_capacity(entry.size as usize);
            data.take(entry.size).read_to_end(&mut bytes)?;
            for o in std::iter::once(first).chain(rest.iter_mut()) {
                o.append(entry, &mut bytes.as_slice())?;
            }
            return Ok(());
        }
        let mut spool = io::BufWriter::with_capacity(256 * 1024, tempfile::tempfile()?);
        first.append(
            entry,
            &mut Copying {
                from: data,
                copy: &mut spool,
            },
        )?;
        let mut file = spool.into_inner().map_err(|e| e.into_error())?;
        for o in rest {
            file.rewind()?;
            o.append(
                entry,
                &mut io::BufReader::with_capacity(256 * 1024, &mut file),
            )?;
        }
        Ok(())
    }
}

impl Output for Tee {
    fn finish(self: Box<Self>) -> io::Result<()> {
        for o in self.outputs {
            o.finish()?;
        }
        Ok(())
    }
}
