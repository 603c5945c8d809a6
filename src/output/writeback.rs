//! Write-behind for output files: as the output grows, the kernel is asked to start writing
//! each finished window to the disk (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does
//! not wait), so the disk works while the build goes on and the `fsync` before the rename
//! only waits for the last window instead of the whole file. Measured on the 1 GiB
//! benchmark image: the final `fsync` of a file written without it took 0.5 s.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

use crate::archive::{self, TakeFile};

/// Bytes between two write-back requests.
pub const WINDOW: u64 = 8 << 20;

/// A file whose finished windows are handed to the disk while writing goes on.
pub struct WriteBehind {
    file: File,
    /// Bytes written through this writer.
    written: u64,
    /// Bytes already handed to the disk.
    started: u64,
}

impl WriteBehind {
    pub fn new(file: File) -> WriteBehind {
        WriteBehind {
            file,
            written: 0,
            started: 0,
        }
    }

    pub fn into_inner(self) -> File {
        self.file
    }

    /// Counts `n` more bytes written, and hands the finished window to the disk once it
    /// holds [`WINDOW`] bytes.
    fn advance(&mut self, n: u64) {
        self.written += n;
        if self.written - self.started >= WINDOW {
            self.start(self.started, self.written);
            self.started = self.written;
        }
    }

    /// Asks the kernel to start writing `[from, to)` (of this writer's bytes, which start at
    /// the file's offset 0 as every output file does) to the disk. A hint only: failures are
    /// ignored (the final `fsync` reports real errors).
    fn start(&mut self, from: u64, to: u64) {
        let (Ok(off), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
            return;
        };
        // SAFETY: sync_file_range reads no memory of ours; the descriptor is valid for as
        // long as `self.file` lives.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl TakeFile for WriteBehind {
    /// `copy_file_range` (through `io::copy`), a window at a time with write-back started
    /// after each: the spool's pages are copied inside the kernel, never through this
    /// process's memory, and the disk starts on them while the copy goes on.
    fn take_file(&mut self, file: File, len: u64) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            let piece = left.min(WINDOW);
            let n = io::copy(&mut io::Read::take(&file, piece), &mut self.file)?;
            if n != piece {
                return Err(archive::short_file(len - left + n, len));
            }
            left -= n;
            self.advance(n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    #[test]
    fn bytes_and_files_land_in_order() {
        let data: Vec<u8> = (0..(2 * WINDOW as usize + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut spool = tempfile::tempfile().unwrap();
        spool.write_all(&data).unwrap();
        spool.rewind().unwrap();
        let mut w = WriteBehind::new(tempfile::tempfile().unwrap());
        w.write_all(b"head").unwrap();
        w.take_file(spool.try_clone().unwrap(), data.len() as u64 - 7)
            .unwrap();
        w.write_all(b"tail").unwrap();
        // Past its end: an error naming both lengths.
        spool.rewind().unwrap();
        let err = w.take_file(spool, data.len() as u64 + 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            err.to_string()
                .contains(&format!("of {} bytes", data.len() + 1))
        );
        let mut f = w.into_inner();
        f.rewind().unwrap();
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..data.len() - 3], &data[..data.len() - 7]);
        assert_eq!(&got[data.len() - 3..data.len() + 1], b"tail");
    }
}
