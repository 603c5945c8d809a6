//! The EFI loader of the disk formats: the files of a loader image (`--efi-loader`, by
//! default `imagesmith/efi:dev` from `pkg/efi`) that go into the EFI system partition.
//!
//! Taken from the image's exported file system: every regular file under `EFI/` and
//! `loader/` (the directories of UEFI loaders and of systemd-boot's configuration); anything
//! else in the image (what the engine adds, say) is ignored. `EFI/BOOT/BOOTX64.EFI`, the
//! path firmware boots from a disk without boot entries, must be among them. Each file is
//! spooled to an anonymous temporary file, never held in memory.

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};

use crate::archive::{self, Kind};
use crate::output::disk::Spooled;
use crate::rewrite;

/// The loader every x86-64 UEFI firmware starts from a disk without boot entries.
pub const REMOVABLE_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// The loader's files, sorted by path; cheap to clone (the files are shared).
#[derive(Clone)]
pub struct Loader {
    /// The image they came from, for messages.
    pub image: String,
    files: Arc<Vec<(String, Spooled)>>,
}

impl Loader {
    /// Reads the loader's files from the export (a tar stream) of `image`.
    pub fn from_tar(image: &str, src: impl Read) -> anyhow::Result<Loader> {
        let mut files: Vec<(String, Spooled)> = Vec::new();
        archive::for_each_entry::<_, anyhow::Error, _>(src, |e, data| {
            let name = rewrite::normalize(&e.path).unwrap_or_default();
            let Ok(name) = String::from_utf8(name) else {
                return Ok(());
            };
            let top = name.split('/').next().unwrap_or("");
            if !(top.eq_ignore_ascii_case("EFI") || top == "loader") || !name.contains('/') {
                return Ok(());
            }
            match e.kind {
                Kind::File => {}
                Kind::Dir => return Ok(()),
                _ => bail!("`{name}` is not a regular file or a directory"),
            }
            if files.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                bail!("`{name}` is in the image twice (FAT names ignore case)");
            }
            let s = Spooled::copy(&e, data).with_context(|| format!("reading `{name}`"))?;
            files.push((name, s));
            Ok(())
        })
        .with_context(|| format!("EFI loader image `{image}`"))?;
        if !files
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(REMOVABLE_PATH))
        {
            return Err(anyhow!(
                "EFI loader image `{image}` has no {REMOVABLE_PATH} (the loader UEFI firmware starts)"
            ));
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Loader {
            image: image.to_string(),
            files: Arc::new(files),
        })
    }

    /// The files, sorted by path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &Spooled)> {
        self.files.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// A SHA-256 over the paths and contents.
    pub fn digest(&self) -> [u8; 32] {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        for (n, s) in self.files.iter() {
            c.update(n.as_bytes());
            c.update(&[0]);
            c.update(&s.digest);
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(c.finish().as_ref());
        d
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::archive::{Entry, TarSink};

    pub(crate) fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut s = TarSink::new(Vec::new());
        for (p, d) in entries {
            let e = if p.ends_with('/') {
                Entry::dir(p.trim_end_matches('/'), 0o755, 1)
            } else {
                Entry::file(*p, 0o644, 1, d.len() as u64)
            };
            archive::append_bytes(&mut s, &e, d).unwrap();
        }
        s.finish().unwrap()
    }

    /// A loader with a fake `BOOTX64.EFI` and a loader.conf.
    pub(crate) fn fake() -> Loader {
        let t = tar(&[
            ("EFI/", b""),
            ("EFI/BOOT/BOOTX64.EFI", b"MZ fake loader"),
            ("loader/loader.conf", b"timeout 0\n"),
        ]);
        Loader::from_tar("test/efi:1", t.as_slice()).unwrap()
    }

    #[test]
    fn takes_efi_and_loader_files_only() {
        let t = tar(&[
            (".dockerenv", b""),
            ("etc/hosts", b"x"),
            ("EFI/", b""),
            ("loader/loader.conf", b"timeout 0\n"),
            ("EFI/BOOT/BOOTX64.EFI", b"MZ"),
            ("loader", b"a file named loader"),
        ]);
        let l = Loader::from_tar("i", t.as_slice()).unwrap();
        let names: Vec<&str> = l.files().map(|(n, _)| n).collect();
        assert_eq!(names, ["EFI/BOOT/BOOTX64.EFI", "loader/loader.conf"]);
        assert_eq!(l.files().next().unwrap().1.len, 2);
        assert_eq!(l.digest(), fake_digest_of(&l));
        assert_ne!(l.digest(), fake().digest());
    }

    fn fake_digest_of(l: &Loader) -> [u8; 32] {
        l.clone().digest()
    }

    #[test]
    fn without_the_removable_loader_is_an_error() {
        let t = tar(&[("EFI/systemd/systemd-bootx64.efi", b"MZ")]);
        let err = Loader::from_tar("me/efi:1", t.as_slice())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("me/efi:1") && err.contains(REMOVABLE_PATH),
            "{err}"
        );
    }
}
